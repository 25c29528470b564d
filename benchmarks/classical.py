"""The classical rows: EM (time per iteration, full fit) and KDE (log-density), beside scikit-learn
and SciPy, measured by the functions of benchmarks/bench_em.py and benchmarks/bench_kde.py.

    em   EM on N points from K full-covariance Gaussians in D dimensions: time per iteration of
         genmodels.classical.em (float32) and of scikit-learn's GaussianMixture in its fastest
         setting (the slope over lo..hi iterations from the same start, tol=0, runs alternating),
         and the wall time of a default fit of each (k-means initialisation, then EM to tol=1e-3)
    kde  log-density of Q queries under a Gaussian KDE of P points in D dimensions: jax (float32,
         float64), scikit-learn's exact KernelDensity (rtol=atol=0), SciPy's gaussian_kde
"""

from __future__ import annotations

import time
import warnings

import jax.numpy as jnp
import numpy as np
from sklearn.mixture import GaussianMixture

from benchmarks import bench_em, bench_kde, hardware

ROWS = ('em', 'kde')
FAMILY = {'em': 'gmm', 'kde': 'kde'}
# The README's sizes, and sizes that run in about a second for --smoke.
SIZES = {
    'em': {'n': 200_000, 'd': 16, 'k': 16, 'lo': 2, 'hi': 7, 'repeats': 5},
    'kde': {'queries': 20_000, 'points': 20_000, 'd': 8, 'bandwidth': 0.5, 'repeats': 3},
}
SMOKE_SIZES = {
    'em': {'n': 5_000, 'd': 4, 'k': 4, 'lo': 1, 'hi': 5, 'repeats': 1},
    'kde': {'queries': 500, 'points': 500, 'd': 4, 'bandwidth': 0.5, 'repeats': 1},
}


def measure(row: str, smoke: bool, matmul_size: int) -> dict:
    """The row's record; matmul_size: the [n, n] matmul whose best rate is the CPU's peak (the
    deep rows' setting), for EM's share of it."""
    size = (SMOKE_SIZES if smoke else SIZES)[row]
    if row == 'em':
        return em_record(**size, matmul_size=matmul_size)
    return kde_record(**size)


def em_record(n: int, d: int, k: int, lo: int, hi: int, repeats: int, matmul_size: int) -> dict:
    """The em row. A slope that is not positive (iterations too short to see under other jobs'
    noise, as at --smoke sizes) is reported as null, and so is the speedup it would enter."""
    slopes = bench_em.measure_per_iteration(n, d, k, lo, hi, repeats)
    median = {name: float(np.median(v)) for name, v in slopes.items()}
    timed = {name: v for name, v in median.items() if v > 0}
    sklearn = [name for name in timed if name.startswith('sklearn')]
    best = min(sklearn, key=timed.get) if sklearn else None
    jax_ms = 1e3 * timed['jax f32'] if 'jax f32' in timed else None
    x = bench_em.make_data(n, d, k)
    first, second, n_iter = bench_em.full_fit(jnp.asarray(x, jnp.float32), k)
    sk_seconds, sk_iter = sklearn_full_fit(x, k)
    flops = bench_em.iteration_flops(n, d, k)
    tflops = lambda ms: flops / (ms / 1e3) / 1e12 if ms else None
    peak, peak_source = hardware.peak_tflops('float32', matmul_size)
    achieved = tflops(jax_ms)
    f64_ms = 1e3 * timed['jax f64'] if 'jax f64' in timed else None
    peak64, _ = hardware.peak_tflops('float64', matmul_size)
    return {'n': n, 'd': d, 'k': k, 'em_iteration_ms': jax_ms,
            'em_iteration_ms_float64': f64_ms,
            'em_share_of_peak_float64': tflops(f64_ms) / peak64 if f64_ms and peak64 else None,
            'speedup_vs_sklearn_float64': timed[best] / timed['jax f64'] if best and f64_ms else None,
            'em_gflop_per_iteration': flops / 1e9, 'em_achieved_tflops': achieved,
            'peak_tflops': peak, 'peak_source': peak_source,
            'em_share_of_peak': achieved / peak if achieved and peak else None,
            'sklearn_em_iteration_ms': 1e3 * timed[best] if best else None,
            'sklearn_setting': best,
            'speedup_vs_sklearn': timed[best] / timed['jax f32'] if best and jax_ms else None,
            'fit_seconds': second, 'fit_compile_seconds': max(first - second, 0.0),
            'fit_iterations': n_iter,
            'sklearn_fit_seconds': sk_seconds, 'sklearn_fit_iterations': sk_iter}


def sklearn_full_fit(x: np.ndarray, k: int) -> tuple[float, int]:
    """(wall seconds, iterations) of scikit-learn's default GaussianMixture fit (float64)."""
    model = GaussianMixture(k, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # a ConvergenceWarning changes nothing measured here
        start = time.perf_counter()
        model.fit(x)
    return time.perf_counter() - start, int(model.n_iter_)


def kde_record(queries: int, points: int, d: int, bandwidth: float, repeats: int) -> dict:
    times, out = bench_kde.measure(queries, points, d, bandwidth, repeats)
    median = {name: float(np.median(v)) for name, v in times.items()}
    jax32 = median['jax float32']
    return {'queries': queries, 'points': points, 'd': d, 'bandwidth': bandwidth,
            'score_seconds': jax32, 'score_seconds_float64': median['jax float64'],
            'sklearn_score_seconds': median['sklearn (float64)'],
            'scipy_score_seconds': median['scipy (float64)'],
            'speedup_vs_sklearn': median['sklearn (float64)'] / jax32,
            'speedup_vs_scipy': median['scipy (float64)'] / jax32,
            'max_abs_diff_vs_sklearn': float(np.max(np.abs(out['jax float64']
                                                            - out['sklearn (float64)'])))}
