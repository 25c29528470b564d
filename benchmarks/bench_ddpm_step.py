"""Step time of the DDPM train step in JAX (the trainer's own step function) beside PyTorch eager.

    pip install -r benchmarks/requirements-torch.txt  # torch: this benchmark only, never genmodels
    python benchmarks/bench_ddpm_step.py [--batch_size 128] [--steps 10] [--rounds 5] [--profile]
        [--torch_threads N]

One step of configs/ddpm_mnist.py on 28x28x1 MNIST in [-1, 1] (L_simple, Ho et al. Eq. 14): t ~
U{0..T-1}, eps ~ N(0, I), x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, loss = mean (U-Net(x_t, t) -
eps)^2, Adam at the config's learning-rate schedule after clipping the gradient's global norm at
optimizer.grad_clip_norm, then the EMA of the params at train.ema_rate. The JAX side is
train_state.make_train_step on that config. The PyTorch side (benchmarks/torch_ref/ddpm.py) mirrors
genmodels/nn/unet.py's UNet module for module (NCHW; one torch module per flax module, under the same
names; GroupNorm with unet.num_groups and flax's epsilon 1e-6; the stride-2 SAME downsample padded
(0, 1) on even sizes, as XLA pads; zero-initialised last convs; nearest 2x upsample;
scaled_dot_product_attention) and is checked against flax's on the same weights before timing:
outputs and every gradient, on random weights (flax's initial U-Net outputs 0, so its initial
weights would check nothing). Both sides then train from flax's initial weights on the same
pre-fetched real batches, each drawing t and eps its own way (JAX: genmodels.nn.noise's per-example
keys); torch uses os.cpu_count() threads unless --torch_threads says otherwise.

After warm-up (JAX compilation included), rounds alternate: --steps JAX steps, then --steps torch
steps, so load from other processes hits both sides; the throughput ratio JAX/torch is taken per
round, and the cores other processes keep busy are printed (see benchmarks/bench_dcgan_step.py for
how such load biases it). Then the same for one sampling step: the U-Net forward alone at the batch
size with the EMA params, in JAX both jitted alone and inside lax.scan (as samplers.run_chain runs
it), in torch under inference_mode.

--profile adds XLA's cost analysis of the compiled step and of the forward, the time of each HLO op
in one JAX step (jax.profiler's trace) and of each op in one torch step (torch.profiler).
"""

import argparse
import copy
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from genmodels import xla_cpu  # noqa: E402

xla_cpu.configure()  # train.py's XLA:CPU settings, before JAX starts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Shared with the DCGAN benchmark (which also exits if torch is missing): the JAX side (the
# trainer's step, any family), the alternating timed rounds, the timer and the HLO-op trace.
from bench_dcgan_step import (NUM_BATCHES, WARMUP_STEPS, JaxDCGAN as JaxStep,  # noqa: E402
                              alternate_rounds, timed, trace_step)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.torch_ref.ddpm import (MirrorError, TorchDDPM, TorchUNet,  # noqa: E402
                                       mirror_check, nchw, unmirrored)
from configs import ddpm_mnist  # noqa: E402
from genmodels import data  # noqa: E402
from genmodels.families import ddpm  # noqa: E402


def check_mirrored(config) -> None:
    """The torch side mirrors the unconditional eps-prediction U-Net with L_simple and Adam."""
    bad = unmirrored(config)
    if bad:
        sys.exit(f'the torch mirror does not implement {", ".join(bad)} of this config.')


# ------------------------------------------------------------------------------------------------
# One sampling step: the U-Net forward alone

def forward_fns(config, ema_params, torch_net, torch_ema, batch_size, shape, chain_length):
    """name -> a call of the U-Net forward at `batch_size`: JAX jitted alone, JAX as
    `chain_length` steps of one lax.scan (call time / chain_length is per step), torch."""
    net = ddpm.network(config, 0)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((batch_size, *shape), np.float32))
    t = jnp.full((batch_size,), config.model.num_timesteps // 2, jnp.int32)
    fwd = jax.jit(lambda p, x, t: net.apply({'params': p}, x, t))

    @jax.jit
    def chain(p, x):
        def body(x, s):
            return x - 0.01 * net.apply({'params': p}, x, jnp.full(x.shape[:1], s)), None
        return jax.lax.scan(body, x, jnp.arange(chain_length, 0, -1))[0]

    x_torch, t_torch = nchw(x), torch.from_numpy(np.asarray(t))
    torch_net = copy.deepcopy(torch_net).eval()
    with torch.no_grad():
        for p, e in zip(torch_net.parameters(), torch_ema):
            p.copy_(e)

    def torch_fwd():
        with torch.inference_mode():
            return torch_net(x_torch, t_torch)

    return {'jax jit': (lambda: jax.block_until_ready(fwd(ema_params, x, t)), 1),
            'jax in scan': (lambda: jax.block_until_ready(chain(ema_params, x)), chain_length),
            'torch': (torch_fwd, 1)}, fwd.lower(ema_params, x, t)


# ------------------------------------------------------------------------------------------------
# --profile

def profile(jax_side, torch_side, real, fwd_lowered, jax_ms, torch_ms) -> None:
    compiled = jax_side.step_fn.lower(jax_side.state, jax_side.batches[0]).compile()
    hlo = compiled.as_text()
    print('\n-- XLA cost analysis (XLA counts no multiply-adds on padding)')
    flops = {}
    for name, c in (('train step', compiled), ('U-Net forward', fwd_lowered.compile())):
        cost = c.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops[name] = cost.get('flops', float('nan'))
        print(f'{name:13s}: flops {flops[name] / 1e9:.2f} G, bytes accessed '
              f'{cost.get("bytes accessed", 0) / 1e6:.0f} MB, transcendentals '
              f'{cost.get("transcendentals", 0) / 1e6:.2f} M')
    print(f'train step at the median step times: jax {flops["train step"] / jax_ms / 1e6:.1f} '
          f'GFLOP/s, torch (same maths) {flops["train step"] / torch_ms / 1e6:.1f} GFLOP/s')
    ops = re.findall(r'= \S+ ([\w\-.]+)\(', hlo)
    print(f'HLO: {ops.count("convolution")} convolutions, {hlo.count("__ynn_fusion")} YNNPACK '
          'fusions')
    try:
        trace_step(jax_side, hlo)
    except Exception as e:  # noqa: BLE001 - the profiler is optional here
        print(f'\n-- per-op trace not possible here: {type(e).__name__}: {e}')
    from torch.profiler import ProfilerActivity
    with torch.profiler.profile(activities=[ProfilerActivity.CPU]) as prof:
        wall = timed(lambda: torch_side.step(real))
    print(f'\n-- one torch step under torch.profiler: {1e3 * wall:.0f} ms wall (profiling '
          'included); ops by self CPU time:')
    print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=14,
                                    max_name_column_width=36))


# ------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch_size', type=int, default=128)
    parser.add_argument('--steps', type=int, default=10, help='steps per framework per round')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--torch_threads', type=int, default=os.cpu_count(),
                        help='torch.set_num_threads (default: os.cpu_count()); 1 resists load '
                             'from other processes far better')
    parser.add_argument('--profile', action='store_true',
                        help='add the cost analysis and per-op times of one step in each')
    args = parser.parse_args()

    threads = args.torch_threads
    torch.set_num_threads(threads)
    config = ddpm_mnist.get_config()
    config.train.batch_size = args.batch_size
    check_mirrored(config)
    data.check_batch_size(args.batch_size)
    batches = data.train_iterator(config.data, args.batch_size, config.data.seed)
    host = [next(batches) for _ in range(NUM_BATCHES)]
    shape = host[0]['image'].shape[1:]

    m, o = config.model, config.optimizer
    print(f'jax {jax.__version__} on {jax.device_count()} device(s) {jax.devices()}, XLA:CPU '
          f'threads: its default (one per core), XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
    print(f'torch {torch.__version__} eager on cpu, torch.set_num_threads({threads}) '
          f'(os.cpu_count() = {os.cpu_count()}, {len(os.sched_getaffinity(0))} usable), oneDNN '
          f'{torch.backends.mkldnn.is_available()}')
    print(f'configs/ddpm_mnist.py: batch {args.batch_size} of {"x".join(map(str, shape))}, '
          f'{config.objective}/{m.prediction}, T {m.num_timesteps} {m.schedule}; U-Net channels '
          f'{m.channels} x {tuple(m.channel_mults)}, num_res_blocks {m.num_res_blocks}, attention '
          f'at {tuple(m.attention_resolutions)} ({m.num_heads} head(s)), dropout {m.dropout}; '
          f'Adam {o.learning_rate:g} ({o.b1}, {o.b2}) {o.schedule} warm-up {o.warmup_steps}, '
          f'grad_clip_norm {o.grad_clip_norm}, ema_rate {config.train.ema_rate}')

    jax_side = JaxStep(config, host)
    params = jax.device_get(jax_side.state['params'])
    torch_net = TorchUNet(m, shape)
    try:
        print('mirror check: ' + mirror_check(config, torch_net, params, host[0]['image']))
    except MirrorError as e:
        sys.exit(str(e))
    torch_side = TorchDDPM(config, torch_net, params)
    real = [nchw(b['image']) for b in host]

    def torch_steps(n):
        for i in range(n):
            torch_side.step(real[i % NUM_BATCHES])

    compile_s = timed(lambda: jax_side.steps(1))
    jax_side.steps(WARMUP_STEPS)
    torch_steps(WARMUP_STEPS + 1)
    print(f'jax first step (compilation) {compile_s:.1f} s; {WARMUP_STEPS} warm-up steps each')

    jax_ms, torch_ms = alternate_rounds(lambda n: jax_side.steps(n), torch_steps, args)
    for name, metrics in (('jax', jax_side.metrics), ('torch', torch_side.metrics)):
        print(f'last step\'s metrics, {name:5s}: ' + ', '.join(
            f'{k} {float(v):.4f}' for k, v in sorted(metrics.items())))

    # One sampling step: the forward alone, rounds alternating the same way.
    fns, fwd_lowered = forward_fns(config, jax_side.state['ema_params'], torch_net,
                                   torch_side.ema, args.batch_size, shape, args.steps)
    for fn, _ in fns.values():  # compilation, warm-up
        fn()
    fwd_ms = {name: [] for name in fns}
    for _ in range(args.rounds):
        for name, (fn, per_call) in fns.items():
            calls = 1 if per_call > 1 else args.steps
            fwd_ms[name].append(1e3 * timed(lambda: [fn() for _ in range(calls)])
                                / (calls * per_call))
    med = {name: float(np.median(v)) for name, v in fwd_ms.items()}
    print(f'\n-- one sampling step, the U-Net forward alone (batch {args.batch_size}, EMA params), '
          f'median over {args.rounds} rounds of {args.steps} forwards: jax jitted alone '
          f'{med["jax jit"]:.1f} ms, jax inside lax.scan (as the samplers run it) '
          f'{med["jax in scan"]:.1f} ms, torch inference_mode {med["torch"]:.1f} ms; ratio '
          f'jax/torch {med["torch"] / med["jax jit"]:.3f} alone, '
          f'{med["torch"] / med["jax in scan"]:.3f} in scan')
    if args.profile:
        profile(jax_side, torch_side, real[0], fwd_lowered, float(np.median(jax_ms)),
                float(np.median(torch_ms)))


if __name__ == '__main__':
    main()
