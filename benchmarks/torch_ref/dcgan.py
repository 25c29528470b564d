"""PyTorch eager mirror of genmodels/families/gan.py's DCGAN (configs/dcgan_mnist.py).

One step is one D update (with R1 on a share of the real batch when the config has it) and then
one G update (fresh z, against the updated D): non-saturating loss, Adam for both players, EMA of
G's weights. The mirror follows gan.py layer for layer (NCHW;
PixelShuffle for depth-to-space; kernel sizes read from the flax parameters; BatchNorm momentum 0.1
for flax's 0.9; D's weights frozen during G's backward, as JAX takes no gradient in them) and is
checked against flax's modules on the same weights (`mirror_check`).

Used by benchmarks/bench_dcgan_step.py and benchmarks/run.py; torch is a benchmark-only dependency.
"""

import copy
import math

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.torch_ref.optim import global_norm
from genmodels.families import gan

F = torch.nn.functional


def gan_step_unmirrored(config) -> dict[str, bool]:
    """{config key: True where its value is one that neither GAN mirror implements}: both mirror
    one non-saturating step of an unconditional G and D with R1 and Adam."""
    m, loss = config.model, config.loss
    return {
        'objective': config.objective != 'non_saturating',
        'model.spectral_norm': m.spectral_norm,
        'model.conditional': m.conditional,
        'model.info_*': bool(m.info_categorical or m.info_continuous),
        'loss.augment': bool(loss.augment),
        'loss.n_disc': loss.n_disc != 1,
        'loss.top_k': loss.top_k < 1,
    }


def unmirrored(config) -> list[str]:
    """The config keys whose values this mirror does not implement (it mirrors the default DCGAN
    config only); empty when it mirrors `config`."""
    opts = (config.optimizer, config.disc_optimizer)
    unmirrored = {
        'model.architecture': config.model.architecture != 'dcgan',
        'model.fc_hidden': config.model.get('fc_hidden', 0) != 0,
        'model.disc_batch_norm': config.model.get('disc_batch_norm', False),
        **gan_step_unmirrored(config),
        'optimizer': any(o.name != 'adam' or o.schedule != 'constant' or o.warmup_steps
                         or o.grad_clip_norm > 0 for o in opts),
    }
    return [k for k, v in unmirrored.items() if v]


def same_padding(size: int, kernel: int, stride: int) -> int:
    """torch's padding for 'SAME' (flax's default); refuses the cases that pad unevenly."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    if total % 2:
        raise ValueError(f"'SAME' pads unevenly for size {size}, kernel {kernel}, stride {stride}.")
    return total // 2


class TorchGenerator(torch.nn.Module):
    """Dense -> [BatchNorm, ReLU, Conv kxk 'SAME' to 4C, depth-to-space] per level -> tanh."""

    def __init__(self, latent_dim, channels, shape, kernel):
        super().__init__()
        h, w, c = shape
        self.chans = tuple(channels)[::-1]
        self.hw = (h // 2 ** len(self.chans), w // 2 ** len(self.chans))
        self.stem = torch.nn.Linear(latent_dim, self.hw[0] * self.hw[1] * self.chans[0])
        layers = []
        for i, ch in enumerate(self.chans):
            width = self.chans[i + 1] if i + 1 < len(self.chans) else c
            conv = torch.nn.Conv2d(ch, 4 * width, kernel, padding=same_padding(1, kernel, 1))
            layers += [torch.nn.BatchNorm2d(ch, eps=1e-5, momentum=0.1), torch.nn.ReLU(), conv,
                       torch.nn.PixelShuffle(2)]
        self.body = torch.nn.Sequential(*layers)

    def forward(self, z):
        return torch.tanh(self.body(self.stem(z).view(-1, self.chans[0], *self.hw)))


class TorchDiscriminator(torch.nn.Module):
    """[Conv kxk stride 2 'SAME', LeakyReLU 0.2] per level -> Linear to one logit; no norm."""

    def __init__(self, channels, shape, kernel):
        super().__init__()
        h, w, c = shape
        if h % 2 ** len(channels) or w % 2 ** len(channels):
            raise ValueError('each stride-2 level needs an even size.')
        layers, cin, size = [], c, h
        for ch in channels:
            layers += [torch.nn.Conv2d(cin, ch, kernel, stride=2,
                                       padding=same_padding(size, kernel, 2)),
                       torch.nn.LeakyReLU(0.2)]
            cin, size = ch, size // 2
        self.body = torch.nn.Sequential(*layers)
        self.logit = torch.nn.Linear(cin * (h // 2 ** len(channels)) * (w // 2 ** len(channels)),
                                     1)

    def forward(self, x):
        return self.logit(self.body(x).flatten(1))[:, 0]


def dcgan_init_(module, std):
    """DCGAN's weights ~ N(0, std^2), BatchNorm's gamma ~ N(1, std^2), zero biases (gan.py)."""
    for m in module.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            torch.nn.init.normal_(m.weight, 0.0, std)
            torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, std)
            torch.nn.init.zeros_(m.bias)


class TorchDCGAN:
    """gan.train_step's order: D step on (real, G(z) detached), then G step with fresh z against
    the updated D, then the EMA of G's weights; the same metrics."""

    def __init__(self, config, shape, kernels):
        m = config.model
        self.latent_dim, self.rate = m.latent_dim, config.train.ema_rate
        self.r1_weight, self.r1_fraction = config.loss.r1_weight, config.loss.r1_fraction
        self.G = TorchGenerator(m.latent_dim, m.channels, shape, kernels['G'])
        self.D = TorchDiscriminator(m.channels, shape, kernels['D'])
        dcgan_init_(self.G, m.init_std)
        dcgan_init_(self.D, m.init_std)
        self.G.train()
        self.opt_g, self.opt_d = (torch.optim.Adam(net.parameters(), lr=o.learning_rate,
                                                   betas=(o.b1, o.b2), eps=1e-8)
                                  for net, o in ((self.G, config.optimizer),
                                                 (self.D, config.disc_optimizer)))
        self.ema = [p.detach().clone() for p in self.G.parameters()]

    def step(self, real):
        b = real.shape[0]
        # 1. DISCRIMINATOR. G in train mode (batch statistics), as gan.py's _generate.
        with torch.no_grad():
            fake = self.G(torch.randn(b, self.latent_dim))
        d_loss, total, l_real, l_fake = discriminator_loss(self.D, real, fake, self.r1_weight,
                                                          self.r1_fraction)
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        d_grad_norm = global_norm([p.grad for p in self.D.parameters()])
        self.opt_d.step()
        # 2. GENERATOR: -log D(G(z)); no gradient in D's weights (JAX takes none either).
        self.D.requires_grad_(False)
        g_loss = F.softplus(-self.D(self.G(torch.randn(b, self.latent_dim)))).mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.D.requires_grad_(True)
        g_params = list(self.G.parameters())
        g_grad_norm = global_norm([p.grad for p in g_params])
        self.opt_g.step()
        with torch.no_grad():  # ema = rate * ema + (1 - rate) * params
            for e, p in zip(self.ema, g_params):
                e.lerp_(p, 1.0 - self.rate)
        return step_metrics(d_loss, g_loss, l_real, l_fake, d_grad_norm, g_grad_norm)


def discriminator_loss(critic, real, fake, r1_weight, r1_fraction):
    """(D's non-saturating loss, it plus R1 when r1_weight > 0, logits of real, of fake): R1 on
    the first ceil(r1_fraction * B) real examples, as gan.r1_subset."""
    l_real, l_fake = critic(real), critic(fake)
    d_loss = (F.softplus(-l_real) + F.softplus(l_fake)).mean()  # -log s(l), -log(1 - s(l))
    total = d_loss
    if r1_weight > 0:
        sub = real[:max(1, math.ceil(r1_fraction * real.shape[0]))].detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(sub).sum(), sub, create_graph=True)
        total = total + 0.5 * r1_weight * grad.pow(2).flatten(1).sum(1).mean()
    return d_loss, total, l_real, l_fake


def step_metrics(d_loss, g_loss, l_real, l_fake, d_grad_norm, g_grad_norm) -> dict:
    """gan.train_step's metrics, from a torch step's values."""
    return {'d_loss': d_loss.detach(), 'g_loss': g_loss.detach(),
            'd_real_accuracy': (l_real.detach() > 0).float().mean(),
            'd_fake_accuracy': (l_fake.detach() < 0).float().mean(),
            'd_grad_norm': d_grad_norm, 'g_grad_norm': g_grad_norm}


def load_flax_weights(G, D, g_vars, d_vars) -> None:
    """Copies flax's variables into the torch mirror: HWIO -> OIHW kernels, NHWC -> NCHW flatten
    orders of G's stem and D's logit layer, and depth-to-space's channel order (i, j, c) to
    PixelShuffle's (c, i, j)."""
    def put(t, a):
        t.data.copy_(torch.tensor(np.asarray(a)))

    p = g_vars['params']
    hw, chans = G.hw, G.chans
    k = np.asarray(p['stem']['kernel'])
    put(G.stem.weight, k.reshape(-1, *hw, chans[0]).transpose(3, 1, 2, 0).reshape(-1, k.shape[0]))
    put(G.stem.bias, np.asarray(p['stem']['bias']).reshape(*hw, chans[0]).transpose(2, 0, 1)
        .reshape(-1))
    for i in range(len(chans)):
        bn, conv = G.body[4 * i], G.body[4 * i + 2]
        put(bn.weight, p[f'bn_{i}']['scale'])
        put(bn.bias, p[f'bn_{i}']['bias'])
        put(bn.running_mean, g_vars['batch_stats'][f'bn_{i}']['mean'])
        put(bn.running_var, g_vars['batch_stats'][f'bn_{i}']['var'])
        k, width = np.asarray(p[f'up_{i}']['kernel']), conv.out_channels // 4
        kh, kw, cin, _ = k.shape
        put(conv.weight, k.reshape(kh, kw, cin, 4, width).transpose(4, 3, 2, 0, 1)
            .reshape(4 * width, cin, kh, kw))
        put(conv.bias, np.asarray(p[f'up_{i}']['bias']).reshape(4, width).T.reshape(-1))
    p = d_vars['params']
    for i in range(len(D.body) // 2):
        put(D.body[2 * i].weight, np.asarray(p[f'conv_{i}']['kernel']).transpose(3, 2, 0, 1))
        put(D.body[2 * i].bias, p[f'conv_{i}']['bias'])
    cin = D.body[-2].out_channels
    k = np.asarray(p['logit']['kernel'])
    side = int(round((k.shape[0] // cin) ** 0.5))
    put(D.logit.weight, k.reshape(side, side, cin, 1).transpose(3, 2, 0, 1).reshape(1, -1))
    put(D.logit.bias, p['logit']['bias'])


def mirror_check(config, torch_gan, g_vars, d_vars, images) -> str:
    """Max |flax - torch| of G(z) (train mode) and D(real) on flax's initial weights."""
    G, D = copy.deepcopy(torch_gan.G), copy.deepcopy(torch_gan.D)
    load_flax_weights(G, D, g_vars, d_vars)
    g, d = gan.networks(config, images.shape[1:])
    z = np.random.default_rng(0).standard_normal((len(images), config.model.latent_dim),
                                                  dtype=np.float32)
    labels = jnp.zeros(len(images), jnp.int32)
    x_jax, _ = g.apply(g_vars, z, labels, train=True, mutable=['batch_stats'])
    l_jax, _ = d.apply(d_vars, images, labels)
    with torch.no_grad():
        x_torch = G(torch.from_numpy(z)).permute(0, 2, 3, 1).numpy()
        l_torch = D(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
    def count(tree):
        return sum(np.size(v) for v in jax.tree.leaves(tree))

    return (f'params G {count(g_vars["params"]):,} (flax) / '
            f'{sum(p.numel() for p in G.parameters()):,} (torch), D {count(d_vars["params"]):,}'
            f' / {sum(p.numel() for p in D.parameters()):,}; same weights: max |G(z) diff| '
            f'{np.max(np.abs(np.asarray(x_jax) - x_torch)):.1e}, max |D(x) diff| '
            f'{np.max(np.abs(np.asarray(l_jax) - l_torch)):.1e}')


def kernel_sizes(state) -> dict[str, int]:
    """The kernel sizes of G's and D's convolutions, as gan.py builds them (from its parameters)."""
    return {'G': state['g']['params']['up_0']['kernel'].shape[0],
            'D': state['d']['params']['conv_0']['kernel'].shape[0]}


def make(config, state, host_batches):
    """(step(i): one torch step on host_batches[i % len], mirror check summary), for
    benchmarks/run.py. `state` is the JAX side's initial state, read before its first step
    donates it."""
    images = host_batches[0]['image']
    torch_gan = TorchDCGAN(config, images.shape[1:], kernel_sizes(state))
    check = mirror_check(config, torch_gan, jax.device_get(state['g']), jax.device_get(state['d']),
                         images)
    real = [torch.from_numpy(np.ascontiguousarray(b['image'].transpose(0, 3, 1, 2)))
            for b in host_batches]
    return lambda i: torch_gan.step(real[i % len(real)]), check
