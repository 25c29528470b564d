"""Step time of the DCGAN train step in JAX (the trainer's own step function) beside PyTorch eager.

    pip install -r benchmarks/requirements-torch.txt  # torch: this benchmark only, never genmodels
    python benchmarks/bench_dcgan_step.py [--batch_size 128] [--steps 20] [--rounds 5] [--profile]
        [--torch_threads N]

One step is one D update (with the config's R1 on an eighth of the real batch; --r1_weight 0 for
none) and then one G update (fresh z, against the updated D) of configs/dcgan_mnist.py on 28x28x1
MNIST: non-saturating loss, Adam 2e-4 with b1 0.5 for both players, EMA of G's weights. The JAX side is train_state.make_train_step on that config. The PyTorch
side, benchmarks/torch_ref/dcgan.py, mirrors genmodels/families/gan.py layer for layer (NCHW;
PixelShuffle for depth-to-space; kernel sizes read from the flax parameters; BatchNorm momentum 0.1
for flax's 0.9; D's weights frozen during G's backward, as JAX takes no gradient in them) and is
checked against flax's modules on the same weights before timing. Both read the same pre-fetched
real batches; torch uses os.cpu_count() threads unless --torch_threads says otherwise.

After warm-up (JAX compilation included), rounds alternate: --steps JAX steps, then --steps torch
steps, so load from other processes hits both sides; the throughput ratio JAX/torch is taken per
round. Such load still biases it toward JAX (eager torch's OpenMP threads lose more to it, less
with --torch_threads 1), so the cores other processes keep busy are printed.

--profile adds XLA's cost analysis of the compiled step, the time of each HLO op in one step
(jax.profiler's trace), and the time of each convolution alone (forward, and forward plus the
backward passes the step needs) in both frameworks at the step's shapes, summed over the uses of
one step; for the D step's uses also in JAX inside a length-1 lax.scan, where XLA:CPU runs them
far slower (why gan.py loops over n_disc in Python).
"""

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from genmodels import xla_cpu  # noqa: E402

xla_cpu.configure()  # train.py's XLA:CPU settings, before JAX starts

try:
    import torch
except ImportError:
    sys.exit('torch is not installed: pip install -r benchmarks/requirements-torch.txt (into a '
             'separate venv or the project\'s; genmodels never imports it).')

import flax.linen as fnn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs import dcgan_mnist  # noqa: E402
from genmodels import data, families  # noqa: E402
from genmodels.training import parallel, train_state  # noqa: E402
from genmodels.families import gan  # noqa: E402
from benchmarks import hlo_profile  # noqa: E402
from benchmarks.hardware import busy_cores  # noqa: E402
from benchmarks.torch_ref.dcgan import (TorchDCGAN, mirror_check, same_padding,  # noqa: E402
                                        unmirrored)

F = torch.nn.functional
WARMUP_STEPS = 3
NUM_BATCHES = 4  # distinct real batches, cycled


def check_mirrored(config) -> None:
    """The torch side mirrors the default DCGAN config only; refuse anything else."""
    bad = unmirrored(config)
    if bad:
        sys.exit(f'the torch mirror does not implement {", ".join(bad)} of this config.')


# ------------------------------------------------------------------------------------------------
# The JAX side: the trainer's step function

class JaxDCGAN:
    def __init__(self, config, host_batches):
        self.family = families.get(config.family)
        mesh = parallel.make_mesh()
        self.state = train_state.init_state(config, self.family, mesh, host_batches[0])
        self.step_fn = train_state.make_train_step(config, self.family, mesh, self.state)
        self.batches = [parallel.shard_batch(mesh, b) for b in host_batches]
        self.i, self.metrics = 0, None

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.state, self.metrics = self.step_fn(self.state, self.batches[self.i % NUM_BATCHES])
            self.i += 1
        jax.block_until_ready((self.state, self.metrics))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------------
# --profile

def trace_step(jax_side, hlo: str, top: int = 12) -> None:
    """One step under jax.profiler; the time of each HLO op from the perfetto trace."""
    ops = hlo_profile.hlo_ops(hlo)
    wall, ms = hlo_profile.op_times(lambda: jax_side.steps(1), ops)
    total = sum(ms.values())
    print(f'\n-- one JAX step under jax.profiler: {1e3 * wall:.0f} ms wall (tracing included); '
          f'its {len(ms)} HLO ops sum to {total:.0f} ms. Top {top}:')
    print(f'{"ms":>8s} {"share":>6s}  {"HLO op":26s} {"kernel":26s} jax op')
    for name, t in sorted(ms.items(), key=lambda kv: -kv[1])[:top]:
        _, kernel, where = ops[name]
        print(f'{t:8.1f} {100 * t / total:5.1f}%  {name:26s} {kernel:26s} {where}')
    by_kind = hlo_profile.by_kind(ops, ms)
    print('by kind: ' + ', '.join(f'{k} {t:.0f} ms ({100 * t / total:.1f}%)'
                                  for k, t in sorted(by_kind.items(), key=lambda kv: -kv[1])))
    print(hlo_profile.CANONICAL_NOTE)


def conv_layers(config, shape, batch_size, kernels):
    """name -> (input NHWC shape, out channels, kernel, stride, torch padding) of each convolution
    (gan.py's D: stride 2; G: stride 1; both 'SAME')."""
    h, w, c = shape
    layers, cin, size = {}, c, (h, w)
    for i, ch in enumerate(config.model.channels):
        k = kernels['D']
        layers[f'D conv_{i}'] = ((batch_size, *size, cin), ch, k, 2, same_padding(size[0], k, 2))
        cin, size = ch, (size[0] // 2, size[1] // 2)
    chans = tuple(config.model.channels)[::-1]
    size = (h // 2 ** len(chans), w // 2 ** len(chans))
    for i, ch in enumerate(chans):
        width = chans[i + 1] if i + 1 < len(chans) else c
        k = kernels['G']
        layers[f'G up_{i}'] = ((batch_size, *size, ch), 4 * width, k, 1, same_padding(1, k, 1))
        size = (size[0] * 2, size[1] * 2)
    return layers


# How one step (n_disc 1) uses each convolution: (layer, pass) -> (times, in the D step).
# Passes: fwd, forward only; dw / dx / dxdw: forward, then the backward pass for the weights /
# the input / both. D step: G forward without gradient; D on real and on fake, each needing dW,
# and dX past conv_0. G step: G forward and backward (dX and dW); D forward and dX only. 22
# convolutions, as many as XLA's compiled step holds.
USES = {('D conv_0', 'dw'): (2, True), ('D conv_1', 'dxdw'): (2, True),
        ('G up_0', 'fwd'): (1, True), ('G up_1', 'fwd'): (1, True),
        ('D conv_0', 'dx'): (1, False), ('D conv_1', 'dx'): (1, False),
        ('G up_0', 'dxdw'): (1, False), ('G up_1', 'dxdw'): (1, False)}
CONVS_PER_PASS = {'fwd': 1, 'dw': 2, 'dx': 2, 'dxdw': 3}
PASS_NAMES = {'fwd': 'fwd', 'dw': 'fwd+dW', 'dx': 'fwd+dX', 'dxdw': 'fwd+dXdW'}


def jax_conv_fn(in_shape, cout, k, stride, variant, in_scan):
    """A jitted pass of flax's nn.Conv (as gan.py's); in_scan: inside a length-1 lax.scan (as
    gan.py's D step ran before it became a Python loop)."""
    conv = fnn.Conv(cout, (k, k), strides=(stride, stride))  # 'SAME'
    x = jnp.asarray(np.random.default_rng(0).standard_normal(in_shape, np.float32))
    params = conv.init(jax.random.key(0), x)['params']
    ct = jnp.ones(conv.apply({'params': params}, x).shape)

    def f(x, p):
        return conv.apply({'params': p}, x)

    def run(x, p, ct):
        if variant == 'fwd':
            return f(x, p)
        y, vjp = {'dw': lambda: jax.vjp(lambda p: f(x, p), p),
                  'dx': lambda: jax.vjp(lambda x: f(x, p), x),
                  'dxdw': lambda: jax.vjp(f, x, p)}[variant]()
        return y, vjp(ct)  # y returned, as the step needs it: XLA may not drop the forward

    def scanned(x, p, ct):
        _, out = jax.lax.scan(lambda c, _: (c, run(x, p, ct)), 0, jnp.arange(1))
        return jax.tree.map(lambda v: v[0], out)

    fn = jax.jit(scanned if in_scan else run)
    return lambda: fn(x, params, ct)


def torch_conv_fn(in_shape, cout, k, stride, padding, variant):
    b, h, w, cin = in_shape
    x = torch.randn(b, cin, h, w, requires_grad=variant in ('dx', 'dxdw'))
    wt = (0.02 * torch.randn(cout, cin, k, k)).requires_grad_(variant in ('dw', 'dxdw'))
    bias = torch.zeros(cout, requires_grad=variant in ('dw', 'dxdw'))
    ct = torch.ones(F.conv2d(x.detach(), wt.detach(), None, stride, padding).shape)
    inputs = {'dw': [wt, bias], 'dx': [x], 'dxdw': [x, wt, bias]}.get(variant)

    def run():
        if variant == 'fwd':
            with torch.no_grad():
                return F.conv2d(x, wt, bias, stride, padding)
        y = F.conv2d(x, wt, bias, stride, padding)
        return y, torch.autograd.grad(y, inputs, ct)
    return run


def time_convs(config, host_batch, kernels, d_in_scan, jax_ms, torch_ms, rounds, reps) -> None:
    layers = conv_layers(config, host_batch['image'].shape[1:], len(host_batch['image']), kernels)
    fns = {}  # (layer, pass, framework) -> fn
    for (name, v), (_, d_step) in USES.items():
        in_shape, cout, k, stride, padding = layers[name]
        fns[name, v, 'jax'] = jax_conv_fn(in_shape, cout, k, stride, v, False)
        if d_step:
            fns[name, v, 'jax in scan'] = jax_conv_fn(in_shape, cout, k, stride, v, True)
        fns[name, v, 'torch'] = torch_conv_fn(in_shape, cout, k, stride, padding, v)
    for fn in fns.values():  # compilation, warm-up
        jax.block_until_ready(fn())
    times = {key: [] for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            sync = (lambda out: out) if key[2] == 'torch' else jax.block_until_ready
            times[key].append(timed(lambda: sync([fn() for _ in range(reps)])) / reps)
    ms = {key: 1e3 * float(np.median(t)) for key, t in times.items()}
    print(f'\n-- convolutions alone, median ms over {rounds} rounds of {reps} calls: JAX (NHWC, '
          'jitted flax nn.Conv), torch (NCHW, eager\n   F.conv2d); fwd+dW etc.: forward, then '
          "that backward. 'jax scan': the same inside a length-1 lax.scan, for\n   the D step's "
          'uses (XLA:CPU canonicalises no convolution of a loop body); the step above runs its D '
          f'step {"in" if d_in_scan else "outside"} one')
    print(f'{"layer":22s} {"input NHWC":>13s} {"pass":>8s} {"jax":>8s} {"jax scan":>9s} '
          f'{"torch":>8s} {"jax/torch":>9s}  uses/step')
    per_layer, convs = {}, 0
    for (name, v), (uses, d_step) in USES.items():
        in_shape, cout, k, stride, _ = layers[name]
        j = ms[name, v, 'jax in scan' if d_step and d_in_scan else 'jax']
        t = ms[name, v, 'torch']
        scan = f'{ms[name, v, "jax in scan"]:9.1f}' if d_step else f'{"-":>9s}'
        print(f'{name + f" {k}x{k}/{stride}->{cout}":22s} {"x".join(map(str, in_shape)):>13s} '
              f'{PASS_NAMES[v]:>8s} {ms[name, v, "jax"]:8.1f} {scan} {t:8.1f} {j / t:9.2f}  '
              f'{uses} ({"D" if d_step else "G"} step)')
        per_layer.setdefault(name, [0.0, 0.0])
        per_layer[name][0] += uses * j
        per_layer[name][1] += uses * t
        convs += uses * CONVS_PER_PASS[v]
    print(f'per step ({convs} convolutions; JAX at the times its step has, in a scan or not):')
    per_layer['all convs'] = [sum(v[0] for v in per_layer.values()),
                              sum(v[1] for v in per_layer.values())]
    for name, (j, t) in per_layer.items():
        print(f'  {name:10s} jax {j:8.1f} ms ({100 * j / jax_ms:5.1f}% of its {jax_ms:.0f} ms '
              f'step)   torch {t:7.1f} ms ({100 * t / torch_ms:5.1f}% of {torch_ms:.0f} ms)')


def profile(config, jax_side, host_batch, kernels, jax_ms, torch_ms, rounds, reps) -> None:
    compiled = jax_side.step_fn.lower(jax_side.state, jax_side.batches[0]).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    hlo = compiled.as_text()
    ops = re.findall(r'= \S+ ([\w\-.]+)\(', hlo)
    flops = cost.get('flops', float('nan'))
    print('\n-- XLA cost analysis of the compiled step')
    print(f'flops {flops / 1e9:.2f} G, bytes accessed {cost.get("bytes accessed", 0) / 1e6:.0f} MB'
          f', transcendentals {cost.get("transcendentals", 0) / 1e6:.2f} M (XLA counts no '
          'multiply-adds on padding)')
    print(f'at the median step times: jax {flops / jax_ms / 1e6:.1f} GFLOP/s, torch (same '
          f'maths) {flops / torch_ms / 1e6:.1f} GFLOP/s')
    d_in_scan = bool(re.search(r'op_name="[^"]*while/body[^"]*Discriminator', hlo))
    print(f'HLO: {ops.count("convolution")} convolutions, {hlo.count("__ynn_fusion")} '
          f'YNNPACK fusions; D step in a while loop (lax.scan): {"yes" if d_in_scan else "no"}')
    try:
        trace_step(jax_side, hlo)
    except Exception as e:  # noqa: BLE001 - the profiler is optional here
        print(f'\n-- per-op trace not possible here: {type(e).__name__}: {e}')
    time_convs(config, host_batch, kernels, d_in_scan, jax_ms, torch_ms, rounds, reps)

    # The one piece of the step that differs by design: per-example keyed noise
    # (genmodels.nn.noise).
    b = len(host_batch['image'])
    index = jnp.arange(b, dtype=jnp.int32)
    draw = jax.jit(lambda key: gan.latents(config, key, index)[0])
    jax.block_until_ready(draw(jax.random.key(0)))
    jt, tt = [], []
    for _ in range(rounds):
        jt.append(timed(lambda: jax.block_until_ready([draw(jax.random.key(i))
                                                       for i in range(reps)])) / reps)
        tt.append(timed(lambda: [torch.randn(b, config.model.latent_dim)
                                 for _ in range(reps)]) / reps)
    print(f'\n-- z for {b} examples (2 draws a step): jax per-example keyed noise '
          f'{1e3 * np.median(jt):.2f} ms (standalone jit: includes dispatch), torch.randn '
          f'{1e3 * np.median(tt):.3f} ms')


# ------------------------------------------------------------------------------------------------


def alternate_rounds(jax_steps, torch_steps, args, why: str = '') -> tuple[list, list]:
    """args.rounds rounds of args.steps JAX steps, then args.steps torch steps (so load from other
    processes hits both sides), printing each round, the medians and the throughput ratio, and
    the cores other processes keep busy before and after; -> (jax ms per step, torch ms per
    step), one entry a round. `why` says why load biases the ratio."""
    busy = busy_cores()
    cores = os.cpu_count()
    print(f'other processes kept {busy:.1f} of {cores} cores busy (1 s before timing)' + (
        f': {why}the ratio below is biased toward JAX; time on an idle machine' if busy > 0.2
        else ''))
    jax_ms, torch_ms = [], []
    for r in range(args.rounds):
        jax_ms.append(1e3 * timed(lambda: jax_steps(args.steps)) / args.steps)
        torch_ms.append(1e3 * timed(lambda: torch_steps(args.steps)) / args.steps)
        print(f'round {r + 1}: jax {jax_ms[-1]:7.1f} ms/step, torch {torch_ms[-1]:7.1f} ms/step, '
              f'ratio jax/torch {torch_ms[-1] / jax_ms[-1]:.3f}')
    ratios = np.asarray(torch_ms) / np.asarray(jax_ms)  # throughput ratio = inverse time ratio
    for name, ms in (('jax', jax_ms), ('torch', torch_ms)):
        med = np.median(ms)
        print(f'{name:5s} median {med:7.1f} ms/step, {args.batch_size * 1e3 / med:7.1f} images/s '
              f'(min {min(ms):.1f}, max {max(ms):.1f} ms over {args.rounds} rounds of '
              f'{args.steps} steps)')
    print(f'throughput ratio jax/torch: median {np.median(ratios):.3f} (min {ratios.min():.3f}, '
          f'max {ratios.max():.3f} over {args.rounds} rounds; > 1: JAX is faster)')
    print(f'other processes kept {busy_cores():.1f} of {cores} cores busy (1 s after timing)')
    return jax_ms, torch_ms

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch_size', type=int, default=128)
    parser.add_argument('--steps', type=int, default=20, help='steps per framework per round')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--r1_weight', type=float, default=None,
                        help="R1's weight (default: the config's; 0: the step without R1)")
    parser.add_argument('--torch_threads', type=int, default=os.cpu_count(),
                        help='torch.set_num_threads (default: os.cpu_count()); 1 resists load '
                             'from other processes far better')
    parser.add_argument('--profile', action='store_true',
                        help='add the compiled step\'s cost analysis and per-convolution times')
    parser.add_argument('--profile_reps', type=int, default=3,
                        help='calls per timing of one convolution in --profile')
    args = parser.parse_args()

    threads = args.torch_threads
    torch.set_num_threads(threads)
    config = dcgan_mnist.get_config()
    config.train.batch_size = args.batch_size
    if args.r1_weight is not None:
        config.loss.r1_weight = args.r1_weight
    check_mirrored(config)
    data.check_batch_size(args.batch_size)
    batches = data.train_iterator(config.data, args.batch_size, config.data.seed)
    host = [next(batches) for _ in range(NUM_BATCHES)]
    shape = host[0]['image'].shape[1:]

    m, go, do = config.model, config.optimizer, config.disc_optimizer
    print(f'jax {jax.__version__} on {jax.device_count()} device(s) {jax.devices()}, XLA:CPU '
          f'threads: its default (one per core), XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
    print(f'torch {torch.__version__} eager on cpu, torch.set_num_threads({threads}) '
          f'(os.cpu_count() = {os.cpu_count()}, {len(os.sched_getaffinity(0))} usable), oneDNN '
          f'{torch.backends.mkldnn.is_available()}')
    print(f'configs/dcgan_mnist.py: batch {args.batch_size} of {"x".join(map(str, shape))}, '
          f'{config.objective}, latent {m.latent_dim}, channels {tuple(m.channels)}, n_disc '
          f'{config.loss.n_disc}, spectral_norm {m.spectral_norm}, r1_weight '
          f'{config.loss.r1_weight}, ema_rate {config.train.ema_rate}, Adam G {go.learning_rate:g}'
          f' ({go.b1}, {go.b2}) D {do.learning_rate:g} ({do.b1}, {do.b2})')

    jax_side = JaxDCGAN(config, host)
    g_params, d_params = jax_side.state['g']['params'], jax_side.state['d']['params']
    kernels = {'G': g_params['up_0']['kernel'].shape[0], 'D': d_params['conv_0']['kernel'].shape[0]}
    print(f'kernels, as gan.py builds them (read from its parameters): G {kernels["G"]}x'
          f'{kernels["G"]} stride 1, D {kernels["D"]}x{kernels["D"]} stride 2')
    torch_gan = TorchDCGAN(config, shape, kernels)
    print('mirror check: ' + mirror_check(config, torch_gan, jax.device_get(jax_side.state['g']),
                                          jax.device_get(jax_side.state['d']),
                                          host[0]['image']))
    real = [torch.from_numpy(np.ascontiguousarray(b['image'].transpose(0, 3, 1, 2)))
            for b in host]

    def torch_steps(n):
        for i in range(n):
            torch_gan.metrics = torch_gan.step(real[i % NUM_BATCHES])

    compile_s = timed(lambda: jax_side.steps(1))
    jax_side.steps(WARMUP_STEPS)
    torch_steps(WARMUP_STEPS + 1)
    print(f'jax first step (compilation) {compile_s:.1f} s; {WARMUP_STEPS} warm-up steps each')

    jax_ms, torch_ms = alternate_rounds(lambda n: jax_side.steps(n), torch_steps, args,
                                        'eager torch\'s OpenMP threads lose much more\n  to that '
                                        'than XLA\'s thread pool, so ')
    for name, metrics in (('jax', jax_side.metrics), ('torch', torch_gan.metrics)):
        print(f'last step\'s metrics, {name:5s}: ' + ', '.join(
            f'{k} {float(v):.3f}' for k, v in sorted(metrics.items())))
    if args.profile:
        profile(config, jax_side, host[0], kernels, float(np.median(jax_ms)),
                float(np.median(torch_ms)), max(args.rounds, 1), args.profile_reps)


if __name__ == '__main__':
    main()
