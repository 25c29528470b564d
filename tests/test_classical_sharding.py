"""EM on data sharded over 8 (fake CPU) devices gives the 1-device answer.

Runs in a subprocess because the device count is fixed when jax starts.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from genmodels.classical import em

    assert jax.device_count() == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ('data',))
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(400, 3)) + c for c in (0.0, 4.0, 8.0)])
    x = x[rng.permutation(len(x))]

    def both(x, **kw):
        one, one_info = em.fit(jnp.asarray(x), jax.random.key(0), 3, chunk_size=64, **kw)
        sharded = jax.device_put(jnp.asarray(x), NamedSharding(mesh, P('data')))
        eight, eight_info = em.fit(sharded, jax.random.key(0), 3, chunk_size=64, **kw)
        return (one, one_info), (eight, eight_info)

    start = {'weights': np.full(3, 1 / 3), 'means': x[:3],
             'precisions_cholesky': np.tile(np.eye(3), (3, 1, 1))}
    with jax.enable_x64(True):
        (a, ai), (b, bi) = both(x, init=start, tol=1e-8)
        assert int(ai['n_iter']) == int(bi['n_iter']), (ai['n_iter'], bi['n_iter'])
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-9, atol=1e-12, err_msg=key)
        np.testing.assert_allclose(ai['lower_bounds'], bi['lower_bounds'], rtol=1e-12)
    (a, ai), (b, bi) = both(x.astype(np.float32), n_init=2)  # k-means initialisation too
    np.testing.assert_allclose(ai['lower_bound'], bi['lower_bound'], rtol=1e-5)
    order = np.argsort(np.asarray(a['means'])[:, 0]), np.argsort(np.asarray(b['means'])[:, 0])
    np.testing.assert_allclose(np.asarray(a['means'])[order[0]], np.asarray(b['means'])[order[1]],
                               atol=1e-3)
    print('ok')
''')


def test_eight_devices_equal_one_device():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    flags = os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
    env = dict(os.environ, XLA_FLAGS=flags,
               JAX_PLATFORMS='cpu', PYTHONPATH=root + os.pathsep + os.environ.get('PYTHONPATH', ''))
    result = subprocess.run([sys.executable, '-c', SCRIPT], env=env, cwd=root, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith('ok'), result.stderr[-3000:]
