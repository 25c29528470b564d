"""PyTorch eager mirror of genmodels/families/vae.py's MLP VAE (configs/vae_mnist.py).

The same maths as vae.train_step with the ELBO objective and a Bernoulli likelihood:

    q(z | x) = N(mean, exp(log_var)), an MLP on the flattened image; z = mean + exp(log_var / 2) eps
    loss = mean_B [-log p(x | z) + beta_t KL],  beta_t = beta min(1, t / warm-up)

with KL(q || N(0, I)) in closed form, or with the VampPrior p(z) = (1/K) sum_k q(z | u_k) over K
learned pseudo-inputs u_k the estimate log q(z | x) - log p(z) at the drawn z; then Adam or AdamW
at the config's learning-rate schedule (read from the same optax schedule), the gradient's
global norm, and the EMA of the params at train.ema_rate (a copy when it is 0, as on the JAX side).
Layers are nn.Linear with ReLU between them, named as flax's (`dense_<i>`), so weights map by name;
`mirror_check` compares the encoder, the decoder and the ELBO's terms with flax's on the same
weights. Used by benchmarks/run.py; torch is a benchmark-only dependency.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.torch_ref.optim import ScheduledAdam
from genmodels.families import vae

F = torch.nn.functional


def unmirrored(config) -> list[str]:
    """The config keys whose values this mirror does not implement; empty if it mirrors `config`."""
    m, o = config.model, config.optimizer
    unmirrored = {
        'model.architecture': m.architecture != 'mlp',
        'model.likelihood': m.likelihood != 'bernoulli',
        'objective': config.objective != 'elbo',
        'data.scale': config.data.scale != '01',
        'model.prior': m.prior not in ('standard', 'vamp'),
        'model.top_latent_dim': m.top_latent_dim != 0,
        'optimizer.name': o.name not in ('adam', 'adamw'),
    }
    return [k for k, v in unmirrored.items() if v]


class TorchMLP(torch.nn.Module):
    """nets.MLP: Linear layers with ReLU between them, the last one linear."""

    def __init__(self, features):
        super().__init__()
        for i, (fin, fout) in enumerate(zip(features[:-1], features[1:])):
            self.add_module(f'dense_{i}', torch.nn.Linear(fin, fout))
        self.depth = len(features) - 1

    def forward(self, x):
        for i in range(self.depth):
            x = self.get_submodule(f'dense_{i}')(x)
            if i < self.depth - 1:
                x = F.relu(x)
        return x


def log_normal(z, mean, log_var):
    """vae.log_normal: log N(z; mean, exp(log_var)) summed over the last axis."""
    log_2pi = math.log(2 * math.pi)
    return torch.sum(-0.5 * ((z - mean) ** 2 * torch.exp(-log_var) + log_var + log_2pi), dim=-1)


class TorchVAE(torch.nn.Module):
    def __init__(self, m, num_pixels):
        super().__init__()
        hidden = tuple(m.hidden)
        self.encoder = TorchMLP((num_pixels,) + hidden + (2 * m.latent_dim,))
        self.decoder = TorchMLP((m.latent_dim,) + hidden[::-1] + (num_pixels,))
        self.pseudo_inputs = (torch.nn.Parameter(torch.zeros(m.prior_components, num_pixels))
                              if m.prior == 'vamp' else None)

    def terms(self, x, eps):
        """x [B, D] in {0, 1}, eps [B, D_z] -> (recon [B], kl [B]) in nats (vae.elbo_objective)."""
        mean, log_var = self.encoder(x).chunk(2, dim=-1)
        z = mean + torch.exp(0.5 * log_var) * eps
        # 1. RECONSTRUCTION: log Bernoulli(x; sigmoid(l)), summed over pixels
        recon = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction='none').sum(-1)
        # 2. LATENT: KL to N(0, I) in closed form, or log q - log p at z against the VampPrior
        if self.pseudo_inputs is None:
            kl = 0.5 * torch.sum(mean * mean + torch.exp(log_var) - 1.0 - log_var, dim=-1)
        else:
            means, log_vars = self.encoder(self.pseudo_inputs).chunk(2, dim=-1)     # [K, D_z]
            log_p = (torch.logsumexp(log_normal(z[:, None], means, log_vars), dim=-1)
                     - math.log(len(means)))
            kl = log_normal(z, mean, log_var) - log_p
        return recon, kl


def load_flax_params(net, params) -> None:
    """Copies flax's encoder and decoder Dense layers ([in, out] kernels) and the VampPrior's
    pseudo-inputs into the mirror."""
    with torch.no_grad():
        if net.pseudo_inputs is not None:
            u = np.array(params['prior']['pseudo_inputs'])
            net.pseudo_inputs.copy_(torch.from_numpy(u.reshape(len(u), -1)))
        for part in ('encoder', 'decoder'):
            for name, layer in params[part].items():
                module = getattr(net, part).get_submodule(name)
                module.weight.copy_(torch.from_numpy(np.array(layer['kernel']).T))
                module.bias.copy_(torch.from_numpy(np.array(layer['bias'])))


class TorchVAEStep:
    """vae.train_step's order: ELBO loss with KL warm-up, Adam(W) at the schedule's rate, EMA."""

    def __init__(self, config, net, params):
        loss = config.loss
        self.net, self.latent_dim = net, config.model.latent_dim
        self.beta, self.warmup = loss.beta, loss.kl_warmup_steps
        load_flax_params(net, params)
        self.optimizer = ScheduledAdam(config, net.parameters())
        self.metrics = None

    def step(self, x):
        count = self.optimizer.count
        beta = self.beta * (min(1.0, count / self.warmup) if self.warmup > 0 else 1.0)
        recon, kl = self.net.terms(x, torch.randn(x.shape[0], self.latent_dim))
        loss = torch.mean(-(recon - beta * kl))
        grad_norm = self.optimizer.update(loss)
        self.metrics = {'loss': loss.detach(), 'elbo_nats': (recon - kl).mean().detach(),
                        'grad_norm': grad_norm}


def mirror_check(config, net, params, images, num: int = 16) -> str:
    """Max |flax - torch| of the encoder's and decoder's outputs and of the ELBO's terms, on the
    same (flax's initial) weights, images and noise."""
    x = np.asarray(images[:num], np.float32)
    rng = np.random.default_rng(0)
    eps = rng.standard_normal((len(x), config.model.latent_dim)).astype(np.float32)
    mean, log_var = vae.encode(config, params, x)
    z = mean + jnp.exp(0.5 * log_var) * eps
    out = vae.decode(config, params, z)
    recon = vae.log_px_given_z(config, params, x, out)
    kl = (vae.gaussian_kl(mean, log_var) if config.model.prior == 'standard' else
          vae.log_normal(z, mean, log_var) - vae.log_prior(config, params, z))
    load_flax_params(net, params)
    flat = torch.from_numpy(x.reshape(len(x), -1))
    with torch.no_grad():
        h = net.encoder(flat).numpy()
        out_t = net.decoder(torch.from_numpy(np.array(z))).numpy()
        recon_t, kl_t = net.terms(flat, torch.from_numpy(eps))
    diffs = {'encoder': np.max(np.abs(np.concatenate([mean, log_var], -1) - h)),
             'decoder': np.max(np.abs(np.asarray(out).reshape(len(x), -1) - out_t)),
             'recon': np.max(np.abs(np.asarray(recon) - recon_t.numpy())),
             'kl': np.max(np.abs(np.asarray(kl) - kl_t.numpy()))}
    return 'same weights, max |flax - torch|: ' + ', '.join(f'{k} {v:.1e}' for k, v in
                                                          diffs.items())


def make(config, state, host_batches):
    """(step(i): one torch step on host_batches[i % len], mirror check summary), for
    benchmarks/run.py. Both sides start from the JAX side's initial weights, read before its
    first step donates them."""
    params = jax.device_get(state['params'])
    images = host_batches[0]['image']
    net = TorchVAE(config.model, int(np.prod(images.shape[1:])))
    check = mirror_check(config, net, params, images)
    side = TorchVAEStep(config, net, params)
    flat = [torch.from_numpy(np.ascontiguousarray(b['image'].reshape(len(b['image']), -1)))
            for b in host_batches]
    return lambda i: side.step(flat[i % len(flat)]), check
