"""PyTorch eager mirror of flow_matching.train_step on the U-Net (configs/fm_mnist.py): the DDPM
mirror's U-Net (torch_ref/ddpm.py) told 1000 t, trained on the conditional flow-matching loss
|| v(x_t, t) - (x_1 - x_0) ||^2 of the linear path with independent noise and uniform times.

Used by benchmarks/run.py; torch is a benchmark-only dependency.
"""

import jax
import numpy as np
import torch

from benchmarks.torch_ref import ddpm as ddpm_ref
from benchmarks.torch_ref.optim import ScheduledAdam
from genmodels.families import flow_matching
from genmodels.training import train_state


def unmirrored(config) -> list[str]:
    """The config keys whose values this mirror does not implement (it mirrors the unconditional
    U-Net on the cfm objective's linear path, N(0, I) source, uniform times, with Adam)."""
    m = config.model
    unmirrored = {
        'model.architecture': m.architecture != 'unet',
        'objective': config.objective != 'cfm',
        'model.path': m.path != 'linear',
        'model.time_distribution': m.time_distribution != 'uniform',
        'model.source': m.source != 'normal',
        'model.conditional': m.conditional,
        'optimizer.name': config.optimizer.name != 'adam',
        'train.num_seeds': train_state.num_seeds(config) != 1,
    }
    return [k for k, v in unmirrored.items() if v]


class TorchFlowMatching:
    """flow_matching.train_step's maths on the U-Net: the cfm loss (summed over pixels, averaged
    over the batch), the optimizer of train_state.make_optimizer, then the EMA."""

    def __init__(self, config, net, params):
        self.net = net
        ddpm_ref.load_flax_params(net, params)  # the JAX side's initial weights
        net.train()
        self.optimizer = ScheduledAdam(config, net.parameters())
        self.metrics = None

    def step(self, x1):
        b = x1.shape[0]
        t = torch.rand(b)
        x0 = torch.randn_like(x1)
        tb = t.view(b, 1, 1, 1)
        v = self.net((1 - tb) * x0 + tb * x1, flow_matching.TIME_SCALE * t)
        loss = ((v - (x1 - x0)) ** 2).sum(dim=(1, 2, 3)).mean()
        grad_norm = self.optimizer.update(loss)
        self.metrics = {'loss': loss.detach(), 'grad_norm': grad_norm}


def mirror_check(config, net, params, images, num=16) -> str:
    """The U-Net's velocity loss at random x_0, t on the same random weights, flax vs torch
    (`ddpm_ref.check_unet`); raises ddpm_ref.MirrorError beyond its tolerance."""
    rng = np.random.default_rng(0)
    x1 = np.asarray(images[:num])
    t = rng.uniform(size=len(x1)).astype(np.float32)
    x0 = rng.standard_normal(x1.shape).astype(np.float32)
    tb = t[:, None, None, None]
    return ddpm_ref.check_unet(flow_matching.network(config), net,
                               ddpm_ref.perturbed(params, rng), (1 - tb) * x0 + tb * x1,
                               flow_matching.TIME_SCALE * t, x1 - x0)


def make(config, state, host_batches):
    """(step(i): one torch step on host_batches[i % len], mirror check summary), for
    benchmarks/run.py; both sides start from the JAX side's initial weights."""
    params = jax.device_get(state['params'])
    net = ddpm_ref.TorchUNet(config.model, host_batches[0]['image'].shape[1:])
    check = mirror_check(config, net, params, host_batches[0]['image'])
    side = TorchFlowMatching(config, net, params)
    real = [ddpm_ref.nchw(b['image']) for b in host_batches]
    return lambda i: side.step(real[i % len(real)]), check
