"""The optimizer side of the torch mirrors (VAE, DDPM, MLP GAN): train_state.make_optimizer's
Adam or AdamW with optional global-norm clipping, the learning rate of update k read from the same
optax schedule, then the EMA of the params at train.ema_rate."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from genmodels.training import train_state


def global_norm(tensors):
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


class ScheduledAdam:
    """Adam or AdamW as `train_state.make_optimizer(config[section], num_updates)` builds it, then
    the EMA of the params at train.ema_rate when `ema` (a GAN's D keeps none). torch's AdamW
    scales p by 1 - lr wd before the Adam step, optax.adamw adds lr wd p to it: the same update."""

    def __init__(self, config, params, section: str = 'optimizer', ema: bool = True):
        o = config[section]
        self.clip, self.rate = o.grad_clip_norm, config.train.ema_rate if ema else None
        num_updates = config.train.num_steps
        schedule = train_state.learning_rate_schedule(o, num_updates)
        self.lrs = np.asarray(jax.vmap(schedule)(jnp.arange(num_updates + 1)))
        self.params = list(params)
        adam = dict(lr=float(self.lrs[0]), betas=(o.b1, o.b2), eps=1e-8)
        self.opt = (torch.optim.AdamW(self.params, weight_decay=o.weight_decay, **adam)
                    if o.name == 'adamw' else torch.optim.Adam(self.params, **adam))
        self.ema = [p.detach().clone() for p in self.params] if ema else None
        self.count = 0

    def update(self, loss):
        """One step on `loss`; returns the gradient's global norm (before clipping)."""
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
        if self.ema is not None:
            with torch.no_grad():  # ema = rate * ema + (1 - rate) * params
                torch._foreach_lerp_(self.ema, self.params, 1.0 - self.rate)
        return grad_norm
