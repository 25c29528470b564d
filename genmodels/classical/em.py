"""Gaussian mixtures fitted by EM (Dempster, Laird & Rubin 1977; Bishop, PRML section 9.2).

One iteration is one pass over the data in row blocks that fuses the E and M steps. With the current
parameters (a_k, mu_k, U_k) each block is whitened once, y_nk = U_k^T (x_n - mu_k)  [K, D, C], and

  E:  r_nk = softmax_k(log a_k + log|U_k| - |y_nk|^2 / 2)              (PRML 9.23, in log space)
  S:  N_k = sum_n w_n r_nk,  s_k = sum_n w_n r_nk y_nk,  S_k = sum_n w_n r_nk y_nk y_nk^T
  M:  a_k = N_k / sum N,  mu_k' = mu_k + L_k d_k,                                 (PRML 9.24-9.26)
      Sigma_k' = L_k (S_k / N_k - d_k d_k^T) L_k^T + reg I,  d_k = s_k / N_k,  L_k = U_k^{-T}

The scatter is taken about the old means, so its terms are O(1) in float32. All K whitenings are
one [K*D, D] x [D, C] product. For full and tied covariances the scatter is gathered in data
coordinates as one product with a shared left side, then whitened once per iteration:

  z_nk = r_nk w_n (x_n - mu_k)  [C, K*D],   [x_n - c, 1]^T z  ->  A_k = sum_n r_nk w_n
  (x_n - mu_k)(x_n - mu_k)^T = (x - c)^T z_k - (mu_k - c) s'_k^T,  s'_k = sum_n z_nk  (its last row),
  s_k = U_k^T s'_k,  S_k = U_k^T A_k U_k,

with c the mixture's mean. Its rounding error grows with |mu_k - c| / sigma_k, linearly (only one
factor is uncentred), where the raw second moment's grows with its square. On CPU this
[D+1, C] x [C, K*D] product ran 2x faster than K batched [D, C] x [C, D] products of whitened
coordinates (`python -m benchmarks.bench_em`; docs/benchmarks.md). Diagonal and spherical scatters
are sums of r y^2. Statistics are summed over blocks with lax.scan, and across devices with psum
when the rows are sharded over a mesh (NamedSharding).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

from genmodels import xla_cpu
from genmodels.classical import chunks
from genmodels.classical import gmm
from genmodels.classical import kmeans

INIT_METHODS = ('kmeans', 'k-means++', 'random', 'random_from_data')
PARAM_KEYS = ('weights', 'means', 'precisions_cholesky')


def _block_stats(params, x, w, resp, covariance_type):
    """Statistics of one block about `params`' means: whitened for diagonal and spherical
    covariances, in data coordinates for full and tied ones (`_whitened` converts them). x [C, D],
    w [C]; resp is None (E-step), labels [C] (-1: no component) or responsibilities [C, K]."""
    y = gmm.whiten(x, params['means'], params['precisions_cholesky'], covariance_type)  # [K, D, C]
    if resp is None:
        log_prob = gmm.log_prob_whitened(y, params, covariance_type)  # [K, C]
        log_norm = jax.nn.logsumexp(log_prob, axis=0)  # [C]
        r = jnp.exp(log_prob - log_norm)
        log_lik = jnp.sum(jnp.where(w > 0, w * log_norm, 0.0))
    else:
        if jnp.issubdtype(resp.dtype, jnp.integer):
            resp = jax.nn.one_hot(resp, y.shape[0], dtype=x.dtype)
        r, log_lik = resp.T, jnp.zeros((), x.dtype)
    rw = r * w  # [K, C]
    stats = {'nk': jnp.sum(rw, axis=1), 'log_lik': log_lik, 'weight': jnp.sum(w)}
    if covariance_type in ('full', 'tied'):
        (k, d), c = params['means'].shape, x.shape[0]
        centre = params['weights'] @ params['means']
        z = (rw.T[:, :, None] * (x[:, None, :] - params['means'])).reshape(c, k * d)
        left = jnp.concatenate([x - centre, jnp.ones((c, 1), x.dtype)], axis=1)  # [C, D+1]
        a = (left.T @ z).reshape(d + 1, k, d)
        s = a[d]  # [K, D]
        scatter = (jnp.swapaxes(a[:d], 0, 1)
                   - (params['means'] - centre)[:, :, None] * s[:, None, :])  # [K, D, D]
        return stats | {'s': s, 'scatter': scatter}
    ry = rw[:, None, :] * y  # [K, D, C]
    axes = (2,) if covariance_type == 'diag' else (1, 2)
    return stats | {'s': jnp.sum(ry, axis=2), 'scatter': jnp.sum(ry * y, axis=axes)}


def _whitened(stats, params, covariance_type):
    """Full and tied statistics of `_block_stats` in the whitened coordinates of `params`:
    s_k = U_k^T s'_k and S_k = U_k^T A_k U_k (S = U^T sum_k A_k U for tied covariances)."""
    if covariance_type not in ('full', 'tied'):
        return stats
    u = params['precisions_cholesky']
    if covariance_type == 'full':
        return stats | {'s': jnp.einsum('kde,kd->ke', u, stats['s']),
                        'scatter': jnp.swapaxes(u, 1, 2) @ stats['scatter'] @ u}
    return stats | {'s': stats['s'] @ u, 'scatter': u.T @ jnp.sum(stats['scatter'], axis=0) @ u}


def _stats(params, xs, ws, rs, covariance_type, axes):
    """Statistics summed over blocks (xs [T, C, D], ws [T, C], rs None or [T, C, ...]) and, inside
    shard_map, over the devices on `axes`."""
    blocks = (xs, ws) if rs is None else (xs, ws, rs)
    block_stats = lambda x, w, r=None: _block_stats(params, x, w, r, covariance_type)
    zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                        jax.eval_shape(block_stats, *(b[0] for b in blocks)))
    if axes is not None:  # the running sums hold per-device partial sums until the psum
        zero = lax.pcast(zero, axes, to='varying')
    add = lambda total, block: (jax.tree.map(jnp.add, total, block_stats(*block)), None)
    total, _ = lax.scan(add, zero, blocks)
    return _whitened(total if axes is None else lax.psum(total, axes), params, covariance_type)


def m_step(stats, ref, covariance_type, reg_covar):
    """New parameters from statistics whitened about `ref` (module docstring, M)."""
    nk = stats['nk'] + 10 * jnp.finfo(stats['nk'].dtype).eps  # scikit-learn's empty-component guard
    d = stats['s'] / nk[:, None]  # [K, D]
    chol = gmm.covariances_cholesky(ref['precisions_cholesky'], covariance_type)
    if covariance_type == 'full':
        means = ref['means'] + jnp.einsum('kde,ke->kd', chol, d)
        inner = stats['scatter'] / nk[:, None, None] - d[:, :, None] * d[:, None, :]
        cov = chol @ inner @ jnp.swapaxes(chol, 1, 2)
    elif covariance_type == 'tied':
        means = ref['means'] + d @ chol.T
        inner = (stats['scatter'] - jnp.einsum('k,kd,ke->de', nk, d, d)) / jnp.sum(nk)
        cov = chol @ inner @ chol.T
    elif covariance_type == 'diag':
        means = ref['means'] + chol * d
        cov = chol ** 2 * (stats['scatter'] / nk[:, None] - d ** 2)
    else:
        means = ref['means'] + chol[:, None] * d
        cov = chol ** 2 * (stats['scatter'] / nk - jnp.sum(d ** 2, axis=1)) / d.shape[1]
    if covariance_type in ('full', 'tied'):
        eye = jnp.eye(cov.shape[-1], dtype=cov.dtype)
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2)) + reg_covar * eye
    else:
        cov = cov + reg_covar
    return {'weights': nk / jnp.sum(nk), 'means': means, 'covariances': cov,
            'precisions_cholesky': gmm.precisions_cholesky(cov, covariance_type)}


def _reference(k, d, covariance_type, dtype):
    """Parameters with zero means and identity precisions: whitening about them is the identity."""
    eye = jnp.eye(d, dtype=dtype)
    pc = {'full': jnp.broadcast_to(eye, (k, d, d)), 'tied': eye, 'diag': jnp.ones((k, d), dtype),
          'spherical': jnp.ones((k,), dtype)}[covariance_type]
    return {'weights': jnp.full((k,), 1.0 / k, dtype), 'means': jnp.zeros((k, d), dtype),
            'precisions_cholesky': pc}


def _from_resp(stats_fn, step_fn, resp, k, d, covariance_type, dtype):
    """M-step from given responsibilities: two passes of one loop body, the first about zero means
    (finds the means), the second about those means (the scatter, free of cancellation)."""

    def one_pass(_, params):
        ref = _reference(k, d, covariance_type, dtype) | {'means': params['means']}
        return step_fn(stats_fn(ref, resp), ref)

    start = jax.eval_shape(one_pass, 0, _reference(k, d, covariance_type, dtype))
    start = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), start)
    return lax.fori_loop(0, 2, one_pass, start)


def _with_covariances(params, covariance_type):
    """The EM parameters plus 'covariances' = (U U^T)^{-1} recomputed from 'precisions_cholesky'."""
    chol = gmm.covariances_cholesky(params['precisions_cholesky'], covariance_type)
    cov = chol @ jnp.swapaxes(chol, -1, -2) if covariance_type in ('full', 'tied') else chol ** 2
    return {key: params[key] for key in PARAM_KEYS} | {'covariances': cov}


def trace_capacity(max_iter: int) -> int:
    """Slots of the per-iteration lower-bound trace: max_iter rounded up to a power of two, at
    least 1024, so that fits differing only in max_iter (up to 1024) share one compiled program."""
    return max(1024, 1 << max(int(max_iter) - 1, 0).bit_length())


def _em_loop(stats_fn, step_fn, params, tol, max_iter, previous, capacity):
    """EM until |change of the lower bound| < tol or max_iter (scikit-learn's rule), or a NaN.
    max_iter is traced (at most `capacity`, the trace's static length)."""
    dtype = params['means'].dtype

    def cond(s):
        return (s['n_iter'] < max_iter) & ~s['converged'] & ~jnp.isnan(s['lower_bound'])

    def body(s):
        stats = stats_fn(s['params'], None)
        lower_bound = stats['log_lik'] / stats['weight']  # mean log p(x) under the incoming params
        return {'params': step_fn(stats, s['params']), 'lower_bound': lower_bound,
                'n_iter': s['n_iter'] + 1,
                'converged': jnp.abs(lower_bound - s['lower_bound']) < tol,
                'lower_bounds': s['lower_bounds'].at[s['n_iter']].set(lower_bound)}

    state = {'params': params, 'lower_bound': jnp.asarray(previous, dtype),
             'n_iter': jnp.asarray(0), 'converged': jnp.asarray(False),
             'lower_bounds': jnp.full((capacity,), jnp.nan, dtype)}
    return lax.while_loop(cond, body, state)


def _fit_local(x, w, resp, init, tol, reg_covar, previous, max_iter, *, k, covariance_type,
               capacity, chunk, axes):
    """EM on this device's rows (all rows without a mesh). resp: [n_init, n, K], [n_init, n] labels,
    or None when `init` is complete. Restarts run one after another (lax.map), each the same
    program as a single fit: restart 0 of n_init = 10 reproduces n_init = 1 bit for bit, so more
    restarts never give a lower bound below fewer (under vmap, batching changed the rounding)."""
    d, dtype = x.shape[1], x.dtype
    xs, ws = chunks.to_chunks(x, chunk), chunks.to_chunks(w, chunk)
    stats_fn = lambda p, r: _stats(p, xs, ws, r, covariance_type, axes)
    step_fn = lambda stats, ref: m_step(stats, ref, covariance_type, reg_covar)
    if resp is None:
        return _em_loop(stats_fn, step_fn, _with_covariances(init, covariance_type), tol, max_iter,
                        previous, capacity)

    def restart(r):
        rs = chunks.to_chunks(r, chunk)
        params = _from_resp(stats_fn, step_fn, rs, k, d, covariance_type, dtype)
        params.update(init)
        if 'precisions_cholesky' in init:
            params = _with_covariances(params, covariance_type)
        return _em_loop(stats_fn, step_fn, params, tol, max_iter, previous, capacity)

    return lax.map(restart, resp)


def initial_responsibilities(x, w, rng, k, init_params):
    """Initial assignment: labels [N] (-1 = none, for seeding from k points) or soft resp [N, K]."""
    n = x.shape[0]
    if init_params == 'kmeans':
        centers, _ = kmeans.kmeans_plusplus(x, k, rng, w)
        return kmeans.lloyd(x, centers, w)[1].astype(jnp.int32)
    if init_params == 'random':
        r = jax.random.uniform(rng, (n, k), x.dtype)
        return r / jnp.sum(r, axis=1, keepdims=True)
    if init_params == 'k-means++':
        indices = kmeans.kmeans_plusplus(x, k, rng, w)[1]
    else:
        indices = kmeans.random_from_data(x, k, rng)[1]
    return jnp.full((n,), -1, jnp.int32).at[indices].set(jnp.arange(k, dtype=jnp.int32))


@functools.partial(xla_cpu.jit, fusions=xla_cpu.DOT_FUSIONS,
                   static_argnames=('k', 'n_init', 'init_params'))
def _initial_resps(x, w, rng, *, k, n_init, init_params):
    """Each restart's initial assignment [n_init, ...], from rng split n_init ways. A program of its
    own: the EM program depends only on the assignment's form (labels or soft), not on how it was
    drawn, so fits differing in init_params or covariance_type share compiled code."""
    keys = jax.random.split(rng, n_init)
    return lax.map(lambda key: initial_responsibilities(x, w, key, k, init_params), keys)


@functools.partial(xla_cpu.jit, fusions=xla_cpu.DOT_FUSIONS, static_argnames=(
    'k', 'covariance_type', 'capacity', 'chunk', 'mesh', 'axes'))
def _fit(x, w, resp, init, tol, reg_covar, previous, max_iter, *, k, covariance_type, capacity,
         chunk, mesh, axes):
    """EM from each restart's assignment resp (None when `init` is complete); the best restart."""
    complete = resp is None
    local = functools.partial(_fit_local, k=k, covariance_type=covariance_type, capacity=capacity,
                              chunk=chunk, axes=axes)
    if mesh is not None:
        rows = P(axes)
        resp_spec = P() if complete else P(None, axes)
        local = jax.shard_map(local, mesh=mesh, out_specs=P(),
                              in_specs=(rows, rows, resp_spec, P(), P(), P(), P(), P()))
    state = local(x, w, resp, init, tol, reg_covar, previous, max_iter)
    if complete:
        return state | {'restart_lower_bounds': state['lower_bound'][None]}
    # keep the restart with the highest final lower bound (the first on ties), as scikit-learn
    best = jnp.argmax(jnp.where(jnp.isnan(state['lower_bound']), -jnp.inf, state['lower_bound']))
    return jax.tree.map(lambda a: a[best], state) | {'restart_lower_bounds': state['lower_bound']}


def row_sharding(x):
    """(mesh, axes) when a NamedSharding splits x's rows over several devices, else (None, None)."""
    sharding = getattr(x, 'sharding', None)
    if not isinstance(sharding, NamedSharding) or not sharding.spec or sharding.spec[0] is None:
        return None, None
    axes = sharding.spec[0]
    names = axes if isinstance(axes, tuple) else (axes,)
    size = 1
    for name in names:
        size *= sharding.mesh.shape[name]
    return (sharding.mesh, axes) if size > 1 else (None, None)


def fit(x, rng, n_components, *, covariance_type='full', tol=1e-3, reg_covar=1e-6, max_iter=100,
        n_init=1, init_params='kmeans', init=None, previous_lower_bound=None, sample_weight=None,
        chunk_size=None):
    """Fit a K-component Gaussian mixture by EM, keeping the best of n_init restarts (run one after
    another in one compiled program).

    x: [N, D] float array (float32 by default; float64 when jax_enable_x64 is on and x is float64),
      optionally sharded by rows over a mesh with NamedSharding(mesh, P('data')).
    init: optional dict with any of 'weights', 'means', 'precisions_cholesky'; given entries replace
      those of the `init_params` initialisation (all three: warm start, no initialisation is run).
    previous_lower_bound: the lower bound the first iteration's change is measured from (warm start;
      default -inf).
    sample_weight: optional [N] non-negative weights (scikit-learn's GaussianMixture has none).

    Returns (params, info): params as in `gmm.py`; info holds 'lower_bound' (the mean log-likelihood
    before the last M-step, as scikit-learn's lower_bound_), 'n_iter', 'converged', 'lower_bounds'
    [trace_capacity(max_iter)] (the per-iteration trace, NaN-padded) and 'restart_lower_bounds'
    [n_init].
    """
    gmm.check_covariance_type(covariance_type)
    if init_params not in INIT_METHODS:
        raise ValueError(f'init_params={init_params!r}; expected one of {INIT_METHODS}.')
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim != 2 or x.shape[0] < n_components:
        raise ValueError(
            f'x has shape {x.shape}; expected [N, D] with N >= n_components={n_components}.')
    w = jnp.ones(x.shape[:1], x.dtype) if sample_weight is None else jnp.asarray(sample_weight)
    w = w.astype(x.dtype)
    mesh, axes = row_sharding(x)
    devices = 1 if mesh is None else x.shape[0] // x.sharding.shard_shape(x.shape)[0]
    chunk = chunk_size or gmm.default_chunk_size(n_components, x.shape[1])
    chunk = min(chunk, x.shape[0] // devices)
    init = {key: jnp.asarray(value, x.dtype) for key, value in (init or {}).items()
            if key in PARAM_KEYS}
    previous = -jnp.inf if previous_lower_bound is None else previous_lower_bound
    scalars = (jnp.asarray(v, x.dtype) for v in (tol, reg_covar, previous))
    resp = None
    if not all(key in init for key in PARAM_KEYS):
        resp = _initial_resps(x, w, rng, k=n_components, n_init=n_init, init_params=init_params)
    state = _fit(x, w, resp, init, *scalars, jnp.asarray(max_iter, jnp.int32), k=n_components,
                 covariance_type=covariance_type, capacity=trace_capacity(max_iter), chunk=chunk,
                 mesh=mesh, axes=axes)
    params = state.pop('params')
    if not all(bool(jnp.all(jnp.isfinite(v))) for v in params.values()):
        # scikit-learn's message, word for word
        message = ('Fitting the mixture model failed because some components have ill-defined '
                   'empirical covariance (for instance caused by singleton or collapsed samples). '
                   'Try to decrease the number of components, increase reg_covar, or scale the '
                   'input data.')
        if x.dtype == jnp.float32:
            message += (' The numerical accuracy can also be improved by passing float64 data '
                        'instead of float32.')
        raise ValueError(message)
    return params, state
