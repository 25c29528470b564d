"""PyTorch eager mirror of genmodels/families/gan.py's MLP GAN (configs/gan_grid25.py).

One step is one D update (with R1 on a share of the real batch when the config has it) and then
one G update (fresh z, against the updated D): non-saturating loss, Adam for both players at
their configs' learning-rate schedules (`ScheduledAdam`), EMA of G's weights. G is Dense + ReLU
layers and a linear output (tanh on images: `configs/gan_mnist.py`); D mirrors G's widths with
LeakyReLU 0.2 and one logit, as gan.py builds them. Layers are nn.Linear named as flax's, so the
mirror starts from flax's weights, and `mirror_check` compares G(z) and D(x) with flax's on them.

Used by benchmarks/run.py; torch is a benchmark-only dependency.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.torch_ref.dcgan import discriminator_loss, gan_step_unmirrored, step_metrics
from benchmarks.torch_ref.optim import ScheduledAdam
from genmodels import data as data_lib
from genmodels.families import gan

F = torch.nn.functional


def unmirrored(config) -> list[str]:
    """The config keys whose values this mirror does not implement; empty if it mirrors `config`."""
    unmirrored = {
        'model.architecture': config.model.architecture != 'mlp',
        **gan_step_unmirrored(config),
        'model.fourier_features': bool(config.model.fourier_features),
        'optimizer.name': any(config[s].name != 'adam' for s in ('optimizer', 'disc_optimizer')),
    }
    return [k for k, v in unmirrored.items() if v]


class TorchMLP(torch.nn.Module):
    """Linear layers named `dense_<i>` with `act` after each, then a linear layer named `last`."""

    def __init__(self, widths, out_features, act, last):
        super().__init__()
        for i, (fin, fout) in enumerate(zip(widths[:-1], widths[1:])):
            self.add_module(f'dense_{i}', torch.nn.Linear(fin, fout))
        self.add_module(last, torch.nn.Linear(widths[-1], out_features))
        self.depth, self.act, self.last = len(widths) - 1, act, last

    def forward(self, x):
        for i in range(self.depth):
            x = self.act(self.get_submodule(f'dense_{i}')(x))
        return self.get_submodule(self.last)(x)


def generator(latent_dim, hidden, out_features) -> TorchMLP:
    return TorchMLP((latent_dim, *hidden), out_features, F.relu, 'out')


def discriminator(in_features, hidden) -> TorchMLP:
    """On flattened points; its widths are G's reversed."""
    return TorchMLP((in_features, *tuple(hidden)[::-1]), 1, lambda x: F.leaky_relu(x, 0.2),
                    'logit')


def load_flax_params(net, params) -> None:
    """Copies flax's Dense layers ([in, out] kernels) into the mirror's same-named layers."""
    with torch.no_grad():
        for name, layer in params.items():
            module = net.get_submodule(name)
            module.weight.copy_(torch.from_numpy(np.array(layer['kernel']).T))
            module.bias.copy_(torch.from_numpy(np.array(layer['bias'])))


class TorchMLPGAN:
    """gan.train_step's order: D step on (real, G(z) detached), then G step with fresh z against
    the updated D, then the EMA of G's weights; the same metrics."""

    def __init__(self, config, g_params, d_params, point_shape):
        m, loss = config.model, config.loss
        self.latent_dim = m.latent_dim
        self.r1_weight, self.r1_fraction = loss.r1_weight, loss.r1_fraction
        self.G = generator(m.latent_dim, m.hidden, int(np.prod(point_shape)))
        self.D = discriminator(int(np.prod(point_shape)), m.hidden)
        load_flax_params(self.G, g_params)
        load_flax_params(self.D, d_params)
        self.point_shape = tuple(point_shape)
        self.image = not data_lib.is_toy(config.data.name)  # images: tanh output in [-1, 1]
        self.opt_g = ScheduledAdam(config, self.G.parameters())
        self.opt_d = ScheduledAdam(config, self.D.parameters(), section='disc_optimizer',
                                   ema=False)

    def generate(self, b):
        x = self.G(torch.randn(b, self.latent_dim)).view(b, *self.point_shape)
        return torch.tanh(x) if self.image else x

    def critic(self, x):
        return self.D(x.flatten(1))[:, 0]

    def step(self, real):
        b = real.shape[0]
        # 1. DISCRIMINATOR.
        with torch.no_grad():
            fake = self.generate(b)
        d_loss, total, l_real, l_fake = discriminator_loss(self.critic, real, fake,
                                                          self.r1_weight, self.r1_fraction)
        d_grad_norm = self.opt_d.update(total)
        # 2. GENERATOR: -log D(G(z)); no gradient in D's weights (JAX takes none either).
        self.D.requires_grad_(False)
        g_loss = F.softplus(-self.critic(self.generate(b))).mean()
        g_grad_norm = self.opt_g.update(g_loss)
        self.D.requires_grad_(True)
        return step_metrics(d_loss, g_loss, l_real, l_fake, d_grad_norm, g_grad_norm)


def mirror_check(config, torch_gan, g_params, d_params, points) -> str:
    """Max |flax - torch| of G(z) and D(x) on flax's initial weights (before any torch step)."""
    g, d = gan.networks(config, points.shape[1:])
    z = np.random.default_rng(0).standard_normal((len(points), config.model.latent_dim),
                                                  dtype=np.float32)
    labels = jnp.zeros(len(points), jnp.int32)
    x_jax = g.apply({'params': g_params}, z, labels, train=True)
    l_jax, _ = d.apply({'params': d_params}, points, labels)
    with torch.no_grad():
        x_torch = torch_gan.G(torch.from_numpy(z))
        x_torch = (torch.tanh(x_torch) if torch_gan.image else x_torch).numpy()
        l_torch = torch_gan.critic(torch.from_numpy(np.ascontiguousarray(points))).numpy()
    return (f'same weights, max |flax - torch|: G(z) '
            f'{np.max(np.abs(np.asarray(x_jax).reshape(len(points), -1) - x_torch)):.1e}, D(x) '
            f'{np.max(np.abs(np.asarray(l_jax) - l_torch)):.1e}')


def make(config, state, host_batches):
    """(step(i): one torch step on host_batches[i % len], mirror check summary), for
    benchmarks/run.py. Both sides start from the JAX side's initial weights, read before its
    first step donates them."""
    g_params = jax.device_get(state['g']['params'])
    d_params = jax.device_get(state['d']['params'])
    points = host_batches[0]['image']
    torch_gan = TorchMLPGAN(config, g_params, d_params, points.shape[1:])
    check = mirror_check(config, torch_gan, g_params, d_params, points[:64])
    real = [torch.from_numpy(np.ascontiguousarray(b['image'])) for b in host_batches]
    return lambda i: torch_gan.step(real[i % len(real)]), check
