"""Likelihood units, in one place: nats per example, bits per dimension, and the discrete-data
correction for densities of dequantised data.

Every likelihood number this codebase reports is the negative log-likelihood of the *discrete* data
(or an upper bound on it), in nats per example and in bits per dimension, next to a record of the
preprocessing it was measured under. Without that record a VAE on binarised MNIST, a flow on
dequantised [0, 1] pixels and a DDPM on [-1, 1] pixels give numbers that look alike but do not compare.
"""
import math

import ml_collections
import numpy as np

from genmodels import data
from genmodels.data import Preprocessing


def bits_per_dim(nats_per_example, num_dims: int):
    """bpd = nats / (D ln 2)."""
    return nats_per_example / (num_dims * math.log(2.0))


def nats_per_example(bits_per_dim_value, num_dims: int):
    """nats = bpd * D ln 2 (inverse of bits_per_dim)."""
    return bits_per_dim_value * num_dims * math.log(2.0)


def discrete_nll_nats(nll_nats_per_example, num_dims: int, prep: Preprocessing):
    """NLL of the discrete data (nats per example), from the model's NLL under `prep`.

    Dequantised: P(x) = int_bin(x) p(y) dy = w^D E_u[p(y)], so by Jensen
    -log P(x) <= E_u[-log p(y)] - D log w, w = bin width (Theis et al. 2016, Sec. 3.1; Ho et al.
    2020, Sec. 3.3). For 256 levels that adds 8 bits/dim on [0, 1] (w = 1/256) and 7 on [-1, 1].
    """
    if prep.kind == 'dequantized':
        return nll_nats_per_example - num_dims * math.log(prep.bin_width)
    return nll_nats_per_example


def likelihood_record(nll_nats_per_example, num_dims: int, prep: Preprocessing,
                      prefix: str = 'nll') -> dict:
    """Flat eval.json entries for one NLL (or bound: prefix='elbo' for a negative ELBO) given in
    the model's units: {prefix}_nats, {prefix}_bits_per_dim, and the preprocessing it assumes."""
    nats = float(discrete_nll_nats(nll_nats_per_example, num_dims, prep))
    return {f'{prefix}_nats': nats, f'{prefix}_bits_per_dim': float(bits_per_dim(nats, num_dims)),
            **prep.record()}


def toy_reference(data_config: ml_collections.ConfigDict, images: np.ndarray,
                  results: dict) -> dict[str, float]:
    """true_nll_nats: the NLL of the test points `images` [N, D, 1, 1] under the toy's exact
    density; with the model's nll_nats in `results` also kl_estimate_nats = nll_nats -
    true_nll_nats, a Monte Carlo estimate of KL(p || q) = E_p[log p(x) - log q(x)] (x ~ p)."""
    points = images.reshape(len(images), -1)  # [N, D]
    true_nll = -float(np.mean(data.toy_distribution(data_config.name).log_prob(points)))
    record = {'true_nll_nats': true_nll}
    if 'nll_nats' in results:
        record['kl_estimate_nats'] = results['nll_nats'] - true_nll
    return record


def level_spacing(data_config: ml_collections.ConfigDict) -> float:
    """w: the distance between neighbouring pixel levels in model space (2/255 on [-1, 1])."""
    low, high = data.value_range(data_config)
    return (high - low) / data.dataset_info(data_config).max_value


def ode_nll_record(nll_nats: np.ndarray, dims: int, data_config: ml_collections.ConfigDict,
                   solver: str, nfe: int) -> dict:
    """eval.json's ode_nll_* from per-example NLLs [N] of a probability-flow density: on images,
    whose pixels were dequantised as y = x + w (u - 1/2), the bound -log P(x) <= -log p(y) - D log w
    on the 8-bit data; on toy points the density's NLL. With the standard error over the examples
    (which holds the dequantisation and Hutchinson noise too), the solver and its NFE."""
    nll = np.asarray(nll_nats, np.float64)
    if not data.is_toy(data_config.name):
        nll = nll - dims * math.log(level_spacing(data_config))
    return {'ode_nll_nats': float(np.mean(nll)),
            'ode_nll_bits_per_dim': float(bits_per_dim(np.mean(nll), dims)),
            'ode_nll_std_error_nats': float(np.std(nll) / math.sqrt(len(nll))),
            'ode_nll_solver': solver, 'ode_nll_nfe': int(nfe)}
