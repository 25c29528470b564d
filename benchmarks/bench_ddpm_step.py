"""Step time of the DDPM train step in JAX (the trainer's own step function) beside PyTorch eager.

    pip install -r benchmarks/requirements-torch.txt  # torch: this benchmark only, never genmodels
    python benchmarks/bench_ddpm_step.py [--batch_size 128] [--steps 10] [--rounds 5] [--profile]
        [--torch_threads N]

One step of configs/ddpm_mnist.py on 28x28x1 MNIST in [-1, 1] (L_simple, Ho et al. Eq. 14):
t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, loss = mean (U-Net(x_t, t)
- eps)^2, Adam at the config's learning-rate schedule after clipping the gradient's global norm at
optimizer.grad_clip_norm, then the EMA of the params at train.ema_rate. The JAX side is
trainer.make_train_step on that config. The PyTorch side mirrors genmodels/unet.py's UNet module for
module (NCHW; one torch module per flax module, under the same names; GroupNorm with
unet.num_groups and flax's epsilon 1e-6; the stride-2 SAME downsample padded (0, 1) on even sizes,
as XLA pads; zero-initialised last convs; nearest 2x upsample; scaled_dot_product_attention) and is
checked against flax's on the same weights before timing: outputs and every gradient, on random
weights (flax's initial U-Net outputs 0, so its initial weights would check nothing). Both sides
then train from flax's initial weights on the same pre-fetched real batches, each drawing t and eps
its own way (JAX: genmodels.noise's per-example keys); torch uses os.cpu_count() threads unless
--torch_threads says otherwise.

After warm-up (JAX compilation included), rounds alternate: --steps JAX steps, then --steps torch
steps, so load from other processes hits both sides; the throughput ratio JAX/torch is taken per
round, and the cores other processes keep busy are printed (see benchmarks/bench_dcgan_step.py for
how such load biases it). Then the same for one sampling step: the U-Net forward alone at the batch
size with the EMA params, in JAX both jitted alone and inside lax.scan (as diffusion.run_chain runs
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
                              alternate_rounds, global_norm, timed, trace_step)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from flax import traverse_util  # noqa: E402

from configs import ddpm_mnist  # noqa: E402
from genmodels import data, parallel, train_state, unet  # noqa: E402
from genmodels.families import ddpm  # noqa: E402

F = torch.nn.functional
TOLERANCE = 1e-4  # mirror check: max |flax - torch| / max |flax|, per tensor


def check_mirrored(config) -> None:
    """The torch side mirrors the unconditional eps-prediction U-Net with L_simple and Adam."""
    m, o = config.model, config.optimizer
    unmirrored = {
        'model.architecture': m.architecture != 'unet',
        'objective': config.objective != 'simple',
        'model.prediction': m.prediction != 'eps',
        'model.conditional': m.conditional,
        'optimizer.name': o.name != 'adam',
        'train.num_seeds': train_state.num_seeds(config) != 1,
    }
    bad = [k for k, v in unmirrored.items() if v]
    if bad:
        sys.exit(f'the torch mirror does not implement {", ".join(bad)} of this config.')


# ------------------------------------------------------------------------------------------------
# The PyTorch mirror of unet.UNet: module names are flax's, so weights map by name

def group_norm(c):
    return torch.nn.GroupNorm(unet.num_groups(c), c, eps=1e-6)  # flax's GroupNorm epsilon


def zeroed(m):
    torch.nn.init.zeros_(m.weight)
    torch.nn.init.zeros_(m.bias)
    return m


class Conditioning(torch.nn.Module):
    def __init__(self, features, sinusoid_dim):
        super().__init__()
        self.dim = sinusoid_dim
        self.time_dense_0 = torch.nn.Linear(sinusoid_dim, features)
        self.time_dense_1 = torch.nn.Linear(features, features)

    def forward(self, t):  # unet.timestep_embedding, then the MLP
        half = self.dim // 2
        freqs = torch.exp(-np.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]
        emb = F.pad(torch.cat([torch.sin(args), torch.cos(args)], -1), (0, self.dim % 2))
        return self.time_dense_1(F.silu(self.time_dense_0(emb)))


class ResBlock(torch.nn.Module):
    def __init__(self, cin, cout, emb_dim, dropout):
        super().__init__()
        self.norm_0, self.norm_1 = group_norm(cin), group_norm(cout)
        self.conv_0 = torch.nn.Conv2d(cin, cout, 3, padding=1)
        self.emb_proj = torch.nn.Linear(emb_dim, cout)
        self.dropout = torch.nn.Dropout(dropout)
        self.conv_1 = zeroed(torch.nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = torch.nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv_0(F.silu(self.norm_0(x))) + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv_1(self.dropout(F.silu(self.norm_1(h))))
        return (x if self.skip is None else self.skip(x)) + h


class AttentionBlock(torch.nn.Module):
    def __init__(self, c, num_heads):
        super().__init__()
        if c % num_heads:
            raise ValueError(f'{c} channels cannot be split into {num_heads} heads.')
        self.heads, self.norm = num_heads, group_norm(c)
        self.qkv, self.proj_out = torch.nn.Linear(c, 3 * c), zeroed(torch.nn.Linear(c, c))

    def forward(self, x):
        b, c, h, w = x.shape
        seq = self.norm(x).flatten(2).transpose(1, 2)                         # [B, N, C]
        q, k, v = self.qkv(seq).view(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
        return x + self.proj_out(out).transpose(1, 2).reshape(b, c, h, w)


class Downsample(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, stride=2)

    def forward(self, x):  # 'SAME' as XLA pads it: the odd pixel of padding goes after
        pads = [max((-(-n // 2) - 1) * 2 + 3 - n, 0) for n in x.shape[:1:-1]]  # W, H
        return self.conv(F.pad(x, [p for total in pads for p in (total // 2, total - total // 2)]))


class Upsample(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, size):  # jax.image.resize 'nearest' (half-pixel centres)
        return self.conv(F.interpolate(x, size=tuple(size), mode='nearest-exact'))


class TorchUNet(torch.nn.Module):
    """unet.UNet (unconditional, eps-sized output) in NCHW."""

    def __init__(self, m, shape):
        super().__init__()
        c0, levels, c_in = m.channels, len(m.channel_mults), shape[-1]
        self.blocks, self.sizes = m.num_res_blocks, [shape[0]]
        for _ in range(levels - 1):
            self.sizes.append(-(-self.sizes[-1] // 2))
        self.attn = [s in m.attention_resolutions for s in self.sizes]
        add = self.add_module
        self.conditioning = Conditioning(4 * c0, c0)
        self.conv_in = torch.nn.Conv2d(c_in, c0, 3, padding=1)
        ch, skips = c0, [c0]
        for i, mult in enumerate(m.channel_mults):
            for j in range(self.blocks):
                add(f'down_{i}_res_{j}', ResBlock(ch, c0 * mult, 4 * c0, m.dropout))
                ch = c0 * mult
                if self.attn[i]:
                    add(f'down_{i}_attn_{j}', AttentionBlock(ch, m.num_heads))
                skips.append(ch)
            if i < levels - 1:
                add(f'down_{i}_downsample', Downsample(ch))
                skips.append(ch)
        self.mid_res_0 = ResBlock(ch, ch, 4 * c0, m.dropout)
        self.mid_attn = AttentionBlock(ch, m.num_heads)
        self.mid_res_1 = ResBlock(ch, ch, 4 * c0, m.dropout)
        for i, mult in reversed(list(enumerate(m.channel_mults))):
            for j in range(self.blocks + 1):
                add(f'up_{i}_res_{j}', ResBlock(ch + skips.pop(), c0 * mult, 4 * c0, m.dropout))
                ch = c0 * mult
                if self.attn[i]:
                    add(f'up_{i}_attn_{j}', AttentionBlock(ch, m.num_heads))
            if i > 0:
                add(f'up_{i}_upsample', Upsample(ch))
        self.norm_out = group_norm(ch)
        self.conv_out = zeroed(torch.nn.Conv2d(ch, c_in, 3, padding=1))

    def forward(self, x, t):
        get, levels = self.get_submodule, len(self.sizes)
        emb = self.conditioning(t)
        h = self.conv_in(x)
        skips = [h]
        for i in range(levels):
            for j in range(self.blocks):
                h = get(f'down_{i}_res_{j}')(h, emb)
                if self.attn[i]:
                    h = get(f'down_{i}_attn_{j}')(h)
                skips.append(h)
            if i < levels - 1:
                h = get(f'down_{i}_downsample')(h)
                skips.append(h)
        h = self.mid_res_1(self.mid_attn(self.mid_res_0(h, emb)), emb)
        for i in reversed(range(levels)):
            for j in range(self.blocks + 1):
                h = get(f'up_{i}_res_{j}')(torch.cat([h, skips.pop()], 1), emb)
                if self.attn[i]:
                    h = get(f'up_{i}_attn_{j}')(h)
            if i > 0:
                h = get(f'up_{i}_upsample')(h, skips[-1].shape[2:])
        return self.conv_out(F.silu(self.norm_out(h)))


def to_torch(path, value):
    """A flax parameter (path, value) -> (the torch parameter's name, value in its layout)."""
    *module, leaf = path
    a = np.asarray(value)
    if leaf == 'kernel':  # conv HWIO -> OIHW, dense [in, out] -> [out, in]
        a = a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T
    return '.'.join(module) + ('.bias' if leaf == 'bias' else '.weight'), a


def load_flax_params(net, params) -> None:
    ours = dict(net.named_parameters())
    theirs = dict(to_torch(p, v) for p, v in traverse_util.flatten_dict(params).items())
    if set(ours) != set(theirs):
        raise ValueError(f'parameter names differ: {sorted(set(ours) ^ set(theirs))[:5]}')
    with torch.no_grad():
        for name, a in theirs.items():
            if ours[name].shape != a.shape:
                raise ValueError(f'{name}: torch {tuple(ours[name].shape)}, flax {a.shape}')
            ours[name].copy_(torch.from_numpy(np.array(a)))


def nchw(x):
    return torch.from_numpy(np.array(np.asarray(x).transpose(0, 3, 1, 2), order='C'))  # a copy


class TorchDDPM:
    """ddpm.train_step's maths: L_simple, the optimizer of train_state.make_optimizer (the
    learning rate of update k read from the same optax schedule), then the EMA."""

    def __init__(self, config, net, params):
        m, o = config.model, config.optimizer
        self.net, self.T, self.rate, self.clip = net, m.num_timesteps, config.train.ema_rate, \
            o.grad_clip_norm
        load_flax_params(net, params)  # the JAX side's initial weights
        net.train()
        self.ab = torch.tensor(np.asarray(ddpm.schedule(config).alphas_cumprod, np.float32))
        schedule = train_state.learning_rate_schedule(o, config.train.num_steps)
        self.lrs = np.asarray(jax.vmap(schedule)(jnp.arange(config.train.num_steps + 1)))
        self.params = list(net.parameters())
        self.opt = torch.optim.Adam(self.params, lr=float(self.lrs[0]), betas=(o.b1, o.b2),
                                    eps=1e-8)
        self.ema = [p.detach().clone() for p in self.params]
        self.count, self.metrics = 0, None

    def step(self, x0):
        b = x0.shape[0]
        t = torch.randint(0, self.T, (b,))
        eps = torch.randn_like(x0)
        ab = self.ab[t].view(b, 1, 1, 1)
        loss = F.mse_loss(self.net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t), eps)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.params]
        grad_norm = global_norm(grads)
        if self.clip > 0:  # optax.clip_by_global_norm: g * min(1, clip / |g|)
            torch._foreach_mul_(grads, torch.clamp(self.clip / grad_norm, max=1.0))
        for group in self.opt.param_groups:
            group['lr'] = float(self.lrs[min(self.count, len(self.lrs) - 1)])
        self.opt.step()
        self.count += 1
        with torch.no_grad():  # ema = rate * ema + (1 - rate) * params
            torch._foreach_lerp_(self.ema, self.params, 1.0 - self.rate)
        self.metrics = {'loss': loss.detach(), 'grad_norm': grad_norm}


def mirror_check(config, net, params, images, num=16) -> str:
    """Outputs and gradients of the L_simple loss, flax vs torch, on the same random weights, x_0,
    t and eps; exits if any tensor differs by more than TOLERANCE of its largest value."""
    rng = np.random.default_rng(0)
    flat = traverse_util.flatten_dict(jax.device_get(params))
    params = traverse_util.unflatten_dict({  # every weight moved off flax's init (zeros included)
        k: (v + 0.05 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in flat.items()})
    x0 = np.asarray(images[:num])
    t = rng.integers(0, config.model.num_timesteps, num).astype(np.int32)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    ab = np.asarray(ddpm.schedule(config).alphas_cumprod, np.float32)[t][:, None, None, None]
    x_t = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps
    flax_net = ddpm.network(config, 0)

    def loss_fn(p):
        out = flax_net.apply({'params': p}, x_t, t)
        return jnp.mean((out - eps) ** 2), out

    (loss, out), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    net = copy.deepcopy(net)
    load_flax_params(net, params)
    net.eval()
    out_t = net(nchw(x_t), torch.from_numpy(t))
    loss_t = F.mse_loss(out_t, nchw(eps))
    loss_t.backward()

    def rel(a, b):
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))

    out_err = rel(np.asarray(out), out_t.detach().permute(0, 2, 3, 1).numpy())
    torch_grads = dict(net.named_parameters())
    grad_errs = {name: rel(a, torch_grads[name].grad.numpy()) for name, a in (
        to_torch(p, g) for p, g in traverse_util.flatten_dict(jax.device_get(grads)).items())}
    worst = max(grad_errs, key=grad_errs.get)
    n_flax = sum(v.size for v in flat.values())
    summary = (f'params {n_flax:,} (flax) / {sum(p.numel() for p in net.parameters()):,} (torch)'
               f'; on random weights, {num} examples: loss {float(loss):.6f} / '
               f'{loss_t.item():.6f}, max |out diff| / max |out| {out_err:.1e}, worst of '
               f'{len(grad_errs)} gradients {grad_errs[worst]:.1e} ({worst})')
    if max(out_err, grad_errs[worst]) > TOLERANCE:
        sys.exit(f'mirror check FAILED (tolerance {TOLERANCE:g}): {summary}')
    return summary


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
    parallel.check_batch_size(args.batch_size)
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
    print('mirror check: ' + mirror_check(config, torch_net, params, host[0]['image']))
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
