"""KDE log-density: genmodels.classical (jax, exact blocked brute force) vs scikit-learn and SciPy.

  .venv/bin/python -m benchmarks.bench_kde                 # 20,000 queries x 20,000 points, D=8
  .venv/bin/python -m benchmarks.bench_kde --large    # also 1e6 queries x 1e5 points, D=2 (jax)
  .venv/bin/python -m benchmarks.bench_kde --kernels  # also every other kernel and metric

scikit-learn's KernelDensity runs exactly (its defaults rtol=0, atol=0 on the kd-tree); both use the
same isotropic bandwidth. SciPy's gaussian_kde is timed beside them (its kernel covariance is
bandwidth^2 times the sample covariance, ~ bandwidth^2 I on these standard-normal data). Runs
alternate; the table reports medians over --repeats and the largest differences from the float64 jax
result (equal to a direct float64 logsumexp; scikit-learn's tree drifts by up to ~1e-2 in the far
tails).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import gaussian_kde
from sklearn.neighbors import KernelDensity

from genmodels.classical import KernelDensity as JaxKernelDensity
from genmodels.classical import kde, kde_kernels


def timed(fn):
    begin = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - begin, np.asarray(out)


def measure(num_queries, num_points, d, bandwidth, repeats):
    """(name -> seconds of each repeat, the last outputs by name) of the log-density of
    `num_queries` standard-normal queries under a Gaussian KDE of `num_points` such points:
    scikit-learn's exact KernelDensity, SciPy's gaussian_kde (its kernel covariance is
    bandwidth^2 times the sample covariance, ~ bandwidth^2 I on these data: the same work), and
    jax in float32 and float64; runs alternate."""
    rng = np.random.default_rng(0)
    points = rng.normal(size=(num_points, d))
    queries = rng.normal(size=(num_queries, d))
    sk = KernelDensity(bandwidth=bandwidth, rtol=0, atol=0).fit(points)
    sp = gaussian_kde(points.T, bw_method=bandwidth)
    params32 = kde.fit(jnp.asarray(points, jnp.float32), bandwidth)
    q32 = jnp.asarray(queries, jnp.float32)
    with jax.enable_x64(True):
        params64 = kde.fit(jnp.asarray(points), bandwidth)
        q64 = jnp.asarray(queries)
        run64 = lambda: kde.log_density(params64, q64)
        run64()  # compile
    run32 = lambda: kde.log_density(params32, q32)
    run32()  # compile
    times = {'sklearn (float64)': [], 'scipy (float64)': [], 'jax float32': [], 'jax float64': []}
    out = {}
    for _ in range(repeats):
        t, out['sklearn (float64)'] = timed(lambda: sk.score_samples(queries))
        times['sklearn (float64)'].append(t)
        t, _ = timed(lambda: sp.logpdf(queries.T))
        times['scipy (float64)'].append(t)
        t, out['jax float32'] = timed(run32)
        times['jax float32'].append(t)
        with jax.enable_x64(True):
            t, out['jax float64'] = timed(run64)
        times['jax float64'].append(t)
    return times, out


def compare(args):
    times, out = measure(args.queries, args.points, args.d, args.bandwidth, args.repeats)
    ref, out32, out64 = out['sklearn (float64)'], out['jax float32'], out['jax float64']
    median = {name: float(np.median(v)) for name, v in times.items()}
    print(f'KDE log-density, {args.queries} queries x {args.points} points, D={args.d}, '
          f'h={args.bandwidth}, median of {args.repeats}')
    print(f'{"implementation":<20}{"seconds":>10}{"speed-up":>10}   all runs (s)')
    for name, value in median.items():
        runs = ' '.join(f'{v:.2f}' for v in times[name])
        print(f'{name:<20}{value:>10.3f}{median["sklearn (float64)"] / value:>9.1f}x   {runs}')
    print(f'max |log-density difference| from jax float64 (exact summation; values '
          f'{ref.min():.1f}..{ref.max():.1f}): scikit-learn {np.max(np.abs(ref - out64)):.1e}, '
          f'jax float32 {np.max(np.abs(out32 - out64)):.1e}')


def kernels(args):
    """Every kernel (euclidean) and every metric (epanechnikov kernel) beside scikit-learn's
    exact tree, same shape, float64 on both sides, alternating runs. The bandwidth is
    --kernel_bandwidth: with the gaussian one, a compact kernel in 8 dimensions reaches no point
    from most queries."""
    rng = np.random.default_rng(0)
    points = rng.normal(size=(args.points, args.d))
    queries = rng.normal(size=(args.queries, args.d))
    h = args.kernel_bandwidth
    cases = ([(k, 'euclidean') for k in kde_kernels.KERNELS if k != 'gaussian']
             + [('epanechnikov', m) for m in ('manhattan', 'chebyshev', 'minkowski')])
    print(f'KDE log-density by kernel and metric, {args.queries} queries x {args.points} points, '
          f'D={args.d}, h={h}, float64, median of {args.repeats}')
    print(f'{"kernel":<14}{"metric":<11}{"sklearn s":>10}{"jax s":>8}{"speed-up":>10}'
          f'{"max |diff|, both > 0":>22}{"zero here only":>16}{"there, sklearn":>16}')
    for kernel, metric in cases:
        kw = dict(bandwidth=h, kernel=kernel, metric=metric,
                  metric_params={'p': 3.0} if metric == 'minkowski' else None)
        sk = KernelDensity(rtol=0, atol=0, **kw).fit(points)
        ours = JaxKernelDensity(**kw).fit(points)
        ours.score_samples(queries)  # compile
        t_sk, t_jax = [], []
        for _ in range(args.repeats):
            t, ref = timed(lambda: sk.score_samples(queries))
            t_sk.append(t)
            t, out = timed(lambda: ours.score_samples(queries))
            t_jax.append(t)
        both = np.isfinite(ref) & np.isfinite(out)
        only = np.isfinite(ref) & ~np.isfinite(out)  # scikit-learn's tree bounds leave tiny values
        diff = np.max(np.abs(out[both] - ref[both])) if both.any() else float('nan')
        there = f'{ref[only].max():.1f}' if only.any() else '-'
        a, b = float(np.median(t_sk)), float(np.median(t_jax))
        print(f'{kernel:<14}{metric:<11}{a:>10.2f}{b:>8.2f}{a / b:>9.1f}x{diff:>22.1e}'
              f'{int(only.sum()):>16}{there:>16}')


def large(_):
    rng = np.random.default_rng(1)
    params = kde.fit(jnp.asarray(rng.normal(size=(100_000, 2)), jnp.float32), 'scott')
    queries = jnp.asarray(rng.normal(size=(1_000_000, 2)), jnp.float32)
    compiled = kde.log_density.lower(params, queries).compile()
    seconds, out = timed(lambda: compiled(params, queries))
    print(f'1e6 queries x 1e5 points, D=2, float32: {seconds:.1f} s, '
          f'temporary memory {compiled.memory_analysis().temp_size_in_bytes / 2 ** 20:.1f} MiB, '
          f'finite: {bool(np.all(np.isfinite(out)))}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--queries', type=int, default=20_000)
    parser.add_argument('--points', type=int, default=20_000)
    parser.add_argument('--d', type=int, default=8)
    parser.add_argument('--bandwidth', type=float, default=0.5)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--large', action='store_true')
    parser.add_argument('--kernels', action='store_true')
    parser.add_argument('--kernel_bandwidth', type=float, default=2.0)
    args = parser.parse_args()
    compare(args)
    if args.kernels:
        kernels(args)
    if args.large:
        large(args)


if __name__ == '__main__':
    main()
