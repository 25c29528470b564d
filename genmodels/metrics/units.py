"""Likelihood units, in one place: nats per example, bits per dimension, and the discrete-data
correction for densities of dequantised data.

Every likelihood number this codebase reports is the negative log-likelihood of the *discrete* data
(or an upper bound on it), in nats per example and in bits per dimension, next to a record of the
preprocessing it was measured under. Without that record a VAE on binarised MNIST, a flow on
dequantised [0, 1] pixels and a DDPM on [-1, 1] pixels give numbers that look alike but do not compare.
"""
import dataclasses
import math

KINDS = ('binarized', 'discrete', 'dequantized', 'continuous')


def bits_per_dim(nats_per_example, num_dims: int):
    """bpd = nats / (D ln 2)."""
    return nats_per_example / (num_dims * math.log(2.0))


def nats_per_example(bits_per_dim_value, num_dims: int):
    """nats = bpd * D ln 2 (inverse of bits_per_dim)."""
    return bits_per_dim_value * num_dims * math.log(2.0)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How raw data became model inputs; stored beside every likelihood number.

    kind:
      'binarized'   {0, 1} data, model gives a probability mass (Bernoulli decoder): no correction.
      'discrete'    model gives a mass on the num_levels levels directly (e.g. DDPM's discretised
                    decoder, Ho et al. 2020, Sec. 3.3): no correction.
      'dequantized' model gives a density on y = low + (x + u) (high - low) / num_levels,
                    x in {0..num_levels-1}, u ~ U[0, 1)^D: corrected to the discrete data below.
      'continuous'  the data are continuous (toy densities): a density, no discrete counterpart.
    """
    kind: str
    num_levels: int = 256   # levels of the raw data: 256 for 8-bit pixels, 2 for binarised
    low: float | None = 0.0  # model-space interval tiled by the num_levels dequantisation bins;
    high: float | None = 1.0  # None for continuous data used as they are (toy data): no interval

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f'preprocessing kind {self.kind!r} is not one of {KINDS}')
        if self.kind == 'binarized' and self.num_levels != 2:
            raise ValueError(f'binarized data has 2 levels, got num_levels={self.num_levels}')
        if self.low is None or self.high is None:
            if self.kind != 'continuous' or self.low != self.high:
                raise ValueError(f'only continuous data may leave out its interval (low = high = '
                                 f'None); got {self.kind!r} on [{self.low}, {self.high}]')
        elif not self.high > self.low:
            raise ValueError(f'need low < high, got [{self.low}, {self.high}]')

    @property
    def bin_width(self) -> float:
        """Width of one dequantisation bin in model space: (high - low) / num_levels."""
        return (self.high - self.low) / self.num_levels

    def record(self) -> dict:
        """Flat eval.json entries, numbers only (DESIGN.md); keys as genmodels.evaluation writes them.
        Unscaled data (low = high = None) have no data_scale_min / data_scale_max."""
        record = {'data_binarized': int(self.kind == 'binarized'),
                  'data_dequantized': int(self.kind == 'dequantized'),
                  'data_num_levels': 0 if self.kind == 'continuous' else self.num_levels}
        if self.low is not None:
            record |= {'data_scale_min': self.low, 'data_scale_max': self.high}
        return record


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
