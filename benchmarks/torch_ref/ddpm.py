"""PyTorch eager mirror of genmodels/nn/unet.py's U-Net and ddpm.train_step (configs/ddpm_mnist.py).

One torch module per flax module, under the same names, so weights map by name (NCHW; GroupNorm
with unet.num_groups and flax's epsilon 1e-6; the stride-2 SAME downsample padded (0, 1) on even
sizes, as XLA pads; zero-initialised last convs; nearest 2x upsample; scaled_dot_product_attention).
`mirror_check` compares outputs and every gradient with flax's on the same random weights (flax's
initial U-Net outputs 0, so its initial weights would check nothing).

Used by benchmarks/bench_ddpm_step.py and benchmarks/run.py; torch is a benchmark-only dependency.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import traverse_util

from benchmarks.torch_ref.optim import ScheduledAdam
from genmodels.families import ddpm
from genmodels.nn import unet
from genmodels.training import train_state

F = torch.nn.functional
TOLERANCE = 1e-4  # mirror check: max |flax - torch| / max |flax|, per tensor


class MirrorError(AssertionError):
    """The torch mirror's outputs or gradients differ from flax's beyond TOLERANCE."""


def unmirrored(config) -> list[str]:
    """The config keys whose values this mirror does not implement (it mirrors the unconditional
    eps-prediction U-Net with L_simple and Adam); empty when it mirrors `config`."""
    m, o = config.model, config.optimizer
    unmirrored = {
        'model.architecture': m.architecture != 'unet',
        'objective': config.objective != 'simple',
        'model.prediction': m.prediction != 'eps',
        'model.conditional': m.conditional,
        'optimizer.name': o.name != 'adam',
        'train.num_seeds': train_state.num_seeds(config) != 1,
    }
    return [k for k, v in unmirrored.items() if v]


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
        self.net, self.T = net, config.model.num_timesteps
        load_flax_params(net, params)  # the JAX side's initial weights
        net.train()
        self.ab = torch.tensor(np.asarray(ddpm.schedule(config).alphas_cumprod, np.float32))
        self.optimizer = ScheduledAdam(config, net.parameters())
        self.ema = self.optimizer.ema
        self.metrics = None

    def step(self, x0):
        b = x0.shape[0]
        t = torch.randint(0, self.T, (b,))
        eps = torch.randn_like(x0)
        ab = self.ab[t].view(b, 1, 1, 1)
        loss = F.mse_loss(self.net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t), eps)
        grad_norm = self.optimizer.update(loss)
        self.metrics = {'loss': loss.detach(), 'grad_norm': grad_norm}


def perturbed(params, rng):
    """Every weight moved off flax's init (zeros included): flax's initial U-Net outputs 0, so its
    initial weights would check nothing."""
    flat = traverse_util.flatten_dict(jax.device_get(params))
    return traverse_util.unflatten_dict({
        k: (v + 0.05 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in flat.items()})


def mirror_check(config, net, params, images, num=16) -> str:
    """Outputs and gradients of the L_simple loss, flax vs torch, on the same random weights, x_0,
    t and eps; raises MirrorError if any tensor differs by more than TOLERANCE of its largest
    value."""
    rng = np.random.default_rng(0)
    x0 = np.asarray(images[:num])
    num = len(x0)  # a batch smaller than `num`: all of it
    t = rng.integers(0, config.model.num_timesteps, num).astype(np.int32)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    ab = np.asarray(ddpm.schedule(config).alphas_cumprod, np.float32)[t][:, None, None, None]
    x_t = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps
    return check_unet(ddpm.network(config, 0), net, perturbed(params, rng), x_t, t, eps)


def check_unet(flax_net, net, params, x, t, target) -> str:
    """The mean squared error of the U-Net's output at (x, t) against `target`: its value, the
    output and every gradient, flax (`flax_net`, `params`) vs torch (`net`, loaded with the same
    `params`); raises MirrorError if any tensor differs by more than TOLERANCE of its largest
    value."""
    def loss_fn(p):
        out = flax_net.apply({'params': p}, x, t)
        return jnp.mean((out - target) ** 2), out

    (loss, out), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    net = copy.deepcopy(net)
    load_flax_params(net, params)
    net.eval()
    out_t = net(nchw(x), torch.from_numpy(np.asarray(t)))
    loss_t = F.mse_loss(out_t, nchw(target))
    loss_t.backward()

    def rel(a, b):
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))

    out_err = rel(np.asarray(out), out_t.detach().permute(0, 2, 3, 1).numpy())
    torch_grads = dict(net.named_parameters())
    grad_errs = {name: rel(a, torch_grads[name].grad.numpy()) for name, a in (
        to_torch(p, g) for p, g in traverse_util.flatten_dict(jax.device_get(grads)).items())}
    worst = max(grad_errs, key=grad_errs.get)
    n_flax = sum(v.size for v in jax.tree.leaves(params))
    summary = (f'params {n_flax:,} (flax) / {sum(p.numel() for p in net.parameters()):,} (torch)'
               f'; on random weights, {len(x)} examples: loss {float(loss):.6f} / '
               f'{loss_t.item():.6f}, max |out diff| / max |out| {out_err:.1e}, worst of '
               f'{len(grad_errs)} gradients {grad_errs[worst]:.1e} ({worst})')
    if max(out_err, grad_errs[worst]) > TOLERANCE:
        raise MirrorError(f'mirror check FAILED (tolerance {TOLERANCE:g}): {summary}')
    return summary


def make(config, state, host_batches):
    """(step(i): one torch step on host_batches[i % len], mirror check summary), for
    benchmarks/run.py. Both sides start from the JAX side's initial weights, read before its
    first step donates them."""
    params = jax.device_get(state['params'])
    net = TorchUNet(config.model, host_batches[0]['image'].shape[1:])
    check = mirror_check(config, net, params, host_batches[0]['image'])
    side = TorchDDPM(config, net, params)
    real = [nchw(b['image']) for b in host_batches]
    return lambda i: side.step(real[i % len(real)]), check
