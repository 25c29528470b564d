"""Mode coverage of samples from a mixture of well-separated Gaussians (the GAN toy benchmark of
Srivastava et al. 2017 and Lin et al. 2018, on grids of 25 or 100 modes).

Exact samples of a 2D mixture score high_quality_fraction = P(chi^2_2 <= 9) = 1 - exp(-4.5) =
0.989, not 1: a generator reaches 0.98 only with nearly exact blobs (or tighter ones).
"""

import numpy as np

MIN_FRACTION = 0.01  # a mode is covered when at least this fraction of the samples lies near it,
MIN_SHARE = 0.25     # or a quarter of a uniform mixture's share per mode, where that is less
NUM_STDS = 3.0       # "near": within this many standard deviations of the mode's mean
FAR_STDS = 6.0       # "between modes": farther than this from every mode (exact 2D: exp(-18))


def _nearest(samples: np.ndarray, modes: np.ndarray, stds: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's nearest mode [N] and its distance from it in that mode's stds [N]."""
    x = np.asarray(samples, np.float64)
    dist = np.linalg.norm(x[:, None, :] - np.asarray(modes)[None], axis=-1)  # [N, K]
    nearest = np.argmin(dist, axis=1)
    return nearest, dist[np.arange(len(x)), nearest] / np.asarray(stds)[nearest]


def mode_coverage(samples: np.ndarray, modes: np.ndarray, stds: np.ndarray) -> dict[str, float]:
    """samples [N, D], mode means [K, D] and stds [K] -> modes_covered (modes with at least
    min(1%, 1 / 4K) of the samples within 3 std: 1% up to 25 modes; 0.25% on the 100-grid, where
    1% is each mode's whole share and exact samples would cover only about half), modes_total,
    high_quality_fraction (samples within 3 std of some mode) and between_modes_fraction
    (samples farther than 6 std from every mode: on a bridge between modes rather than on a
    mode's widened edge). A sample counts for its nearest mode only."""
    nearest, in_stds = _nearest(samples, modes, stds)
    near = in_stds <= NUM_STDS
    counts = np.bincount(nearest[near], minlength=len(modes))
    min_count = min(MIN_FRACTION, MIN_SHARE / len(modes)) * len(samples)
    return {'modes_covered': int(np.sum(counts >= min_count)),
            'modes_total': int(len(modes)),
            'high_quality_fraction': float(np.mean(near)),
            'between_modes_fraction': float(np.mean(in_stds > FAR_STDS))}


def of_toy_samples(points: np.ndarray, toy, *, true_nll: bool = False) -> dict[str, float]:
    """`mode_coverage` of samples `points` [N, D] of a toy (data.toy_distribution) whose modes are
    known, {} for the others; with `true_nll` also samples_true_nll_nats, the samples' mean NLL
    under the toy's exact density (near the data's own true_nll_nats when they stay on it)."""
    out = {'samples_true_nll_nats': -float(np.mean(toy.log_prob(points)))} if true_nll else {}
    if toy.modes is not None:
        out |= mode_coverage(points, toy.modes, toy.mode_stds)
    return out


def code_holdings(samples: np.ndarray, codes: np.ndarray, num_codes: int, modes: np.ndarray,
                  stds: np.ndarray) -> dict[str, int]:
    """How a GAN's categorical code (InfoGAN's) shares out a mixture's modes: samples [N, D] drawn
    with codes [N] in [0, num_codes). A code holds a mode when more than half of its samples lie
    within 3 std of it. -> codes_holding_a_mode (of num_codes) and modes_held_by_codes (modes
    some code holds). When nearly every code holds a mode, the modes no code holds are the ones
    missing from modes_covered: the codes crowd onto some modes instead of spreading out."""
    nearest, in_stds = _nearest(samples, modes, stds)
    near = in_stds <= NUM_STDS
    codes = np.asarray(codes)
    counts = np.zeros((num_codes, len(modes)), np.int64)  # [code, mode]: its samples near it
    np.add.at(counts, (codes[near], nearest[near]), 1)
    holds = 2 * counts.max(axis=1) > np.bincount(codes, minlength=num_codes)
    return {'codes_holding_a_mode': int(np.sum(holds)),
            'modes_held_by_codes': len(set(np.argmax(counts[holds], axis=1).tolist()))}
