"""Raw values -> model inputs: scaling, dynamic binarization and uniform dequantization.

The noise of binarization / dequantization is drawn from generators keyed by (seed, stream, step,
row of the global batch) (`train_uniform`, `eval_uniform`), so the global batch of a step is the
same whatever the number of processes or devices. `preprocessing` describes how the data became
model inputs; it is recorded beside every likelihood.
"""

from collections.abc import Callable
import dataclasses

import ml_collections
import numpy as np

from genmodels.data import sources

# Key words of the noise generator, so training and evaluation noise never share a stream.
TRAIN_STREAM, EVAL_STREAM = 0, 1


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How raw data became model inputs; stored beside every likelihood number.

    kind:
      'binarized'   {0, 1} data, model gives a probability mass (Bernoulli decoder): no correction.
      'discrete'    model gives a mass on the num_levels levels directly (e.g. DDPM's discretised
                    decoder, Ho et al. 2020, Sec. 3.3): no correction.
      'dequantized' model gives a density on y = low + (x + u) (high - low) / num_levels,
                    x in {0..num_levels-1}, u ~ U[0, 1)^D: corrected to the discrete data
                    (genmodels.metrics.units.discrete_nll_nats).
      'continuous'  the data are continuous (toy densities): a density, no discrete counterpart.
    """
    kind: str
    num_levels: int = 256   # levels of the raw data: 256 for 8-bit pixels, 2 for binarised
    low: float | None = 0.0  # model-space interval tiled by the num_levels dequantisation bins;
    high: float | None = 1.0  # None for continuous data used as they are (toy data): no interval

    KINDS = ('binarized', 'discrete', 'dequantized', 'continuous')

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise ValueError(f'preprocessing kind {self.kind!r} is not one of {self.KINDS}')
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
        """Flat eval.json entries, numbers only (DESIGN.md). Unscaled data (low = high = None)
        have no data_scale_min / data_scale_max."""
        record = {'data_binarized': int(self.kind == 'binarized'),
                  'data_dequantized': int(self.kind == 'dequantized'),
                  'data_num_levels': 0 if self.kind == 'continuous' else self.num_levels}
        if self.low is not None:
            record |= {'data_scale_min': self.low, 'data_scale_max': self.high}
        return record


def value_range(data_config: ml_collections.ConfigDict) -> tuple[float, float] | None:
    """(low, high) of the model inputs: (0, 1) or (-1, 1); None for toy data (unbounded)."""
    if sources.is_toy(data_config.name):
        return None
    return (-1.0, 1.0) if data_config.scale == '-11' else (0.0, 1.0)


def to_unit(data_config: ml_collections.ConfigDict, x):
    """Model inputs in the data's value range -> [0, 1] (not clipped); numpy or jax arrays."""
    low, high = value_range(data_config)
    return (x - low) / (high - low)


def from_unit(data_config: ml_collections.ConfigDict, u):
    """[0, 1] -> the data's value range; numpy or jax arrays."""
    low, high = value_range(data_config)
    return low + (high - low) * u


def preprocessing(data_config: ml_collections.ConfigDict) -> Preprocessing:
    """How the data was turned into model inputs: recorded beside every likelihood number."""
    if sources.is_toy(data_config.name):
        return Preprocessing('continuous', low=None, high=None)  # used as they are
    low, high = value_range(data_config)
    if data_config.binarize:
        return Preprocessing('binarized', num_levels=2, low=low, high=high)
    if data_config.dequantize:
        levels = sources.dataset_info(data_config).max_value + 1
        return Preprocessing('dequantized', num_levels=levels, low=low, high=high)
    return Preprocessing('continuous', low=low, high=high)


def eval_uniform(key: tuple[int, int, int], rows: np.ndarray, shape: tuple[int, ...]
                  ) -> np.ndarray:
    """U[0, 1) float32 noise [len(rows), *shape] of evaluation splits; row i depends only on
    (*key, rows[i]).

    Philox is counter-based (Salmon et al., 2011): key (seed, stream) and a counter starting at
    (0, row, step, 0) give every (step, row) its own stream. This one-stream-per-row scheme draws
    the fixed test noise on which every reported likelihood was measured, so it stays as it is;
    training batches, drawn at every step, use the cheaper `train_uniform`.
    """
    seed, stream, step = key
    bits = np.random.Philox(key=[seed, stream])
    generator = np.random.Generator(bits)
    fresh = bits.state  # empty output buffer; resetting it is cheaper than a new Philox per row
    noise = np.empty((len(rows), *shape), np.float32)
    for i, row in enumerate(rows):
        fresh['state']['counter'] = np.array([0, row, step, 0], np.uint64)
        bits.state = fresh
        noise[i] = generator.random(shape, dtype=np.float32)
    return noise


# Rows of the global batch that share one stream of training noise.
_NOISE_BLOCK_ROWS = 64

def train_uniform(key: tuple[int, int, int], rows: np.ndarray, shape: tuple[int, ...]
                   ) -> np.ndarray:
    """U[0, 1) float32 noise [len(rows), *shape] of a training batch, on numpy's float32 grid
    (multiples of 2**-24); row i depends only on (*key, rows[i]), so a process drawing its own rows
    of the global batch agrees with a single process drawing all of them.

    Rows come in blocks of _NOISE_BLOCK_ROWS: block b of step `step` is one PCG64DXSM stream seeded
    by (seed, stream, step, b) through numpy's SeedSequence, read as raw 32-bit words. Per-row
    Philox streams (`eval_uniform`) cost a Python round trip per row and Philox's 10 rounds per
    word: this is faster at every batch size measured (docs/benchmarks.md).
    """
    seed, stream, step = key
    per_block = _NOISE_BLOCK_ROWS * int(np.prod(shape))
    first, last = int(rows.min()) // _NOISE_BLOCK_ROWS, int(rows.max()) // _NOISE_BLOCK_ROWS
    raw = np.stack([  # [blocks, ceil(per_block / 2)] 64-bit words, two 32-bit words each
        np.random.PCG64DXSM([seed, stream, step, block]).random_raw(-(-per_block // 2))
        for block in range(first, last + 1)])
    bits = raw.view(np.uint32)[:, :per_block].reshape(-1, *shape)
    offset = rows - first * _NOISE_BLOCK_ROWS
    if np.array_equal(offset, np.arange(offset[0], offset[0] + len(rows))):
        bits = bits[offset[0]:offset[0] + len(rows)]  # a process's rows are consecutive: no copy
    else:
        bits = bits[offset]
    # numpy's own float32 draw: the top 24 bits of a 32-bit word, times 2**-24.
    return np.multiply(bits >> 8, np.float32(2.0**-24), dtype=np.float32)


def scale_pixels(pixels: np.ndarray, data_config: ml_collections.ConfigDict, max_value: int,
                noise: Callable[[], np.ndarray]) -> np.ndarray:
    """Raw integer pixels [n, H, W, C] -> float32 in [0, 1] or [-1, 1], with optional noise; toy
    points are returned as they are.

    `noise()` draws the examples' U[0, 1) noise, float32 [n, H, W, C] (`train_uniform` or
    `eval_uniform`); it is called only when the config binarizes or dequantizes.
    """
    if sources.is_toy(data_config.name):
        return pixels
    x = pixels.astype(np.float32)
    if data_config.binarize:
        u = noise()
        x = (u < x / max_value).astype(np.float32)  # P(1) = pixel / max_value
    elif data_config.dequantize:
        u = noise()
        # Keep 16 fractional bits so that pixel + u is exact in float32 (pixel < 2**8) and cannot
        # round up into the next bin: x stays in [pixel, pixel + 1) / (max_value + 1).
        u = np.floor(u * 2**16) / 2**16
        x = (x + u) / (max_value + 1)
    else:
        x = x / max_value
    if data_config.scale == '-11':
        x = 2 * x - 1
    return x
