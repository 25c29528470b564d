"""EM time per iteration: genmodels.classical (jax) vs scikit-learn's GaussianMixture.

  .venv/bin/python -m benchmarks.bench_em                  # N=200,000, D=16, K=16, full covariances
  .venv/bin/python -m benchmarks.bench_em --scaling        # full fits: N up to 1e7, and K, D sweeps
  .venv/bin/python -m benchmarks.bench_em --blocks         # time per iteration by rows per block

Both start from the same weights, means and precisions and run a fixed number of iterations (tol=0).
Per-iteration time is the slope (t(hi) - t(lo)) / (hi - lo), which cancels set-up and the final
E-step; runs alternate between the implementations and the table reports medians over --repeats.
"""

import argparse
import resource
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from genmodels.classical import em, gmm


def iteration_flops(n, d, k):
    """Floating-point operations of one EM iteration with full covariances (em.py's module
    docstring), counted as a dense implementation does them, multiply-adds as 2:
    whitening y = U^T (x - mu) for every point and component, 2NKD^2 (the [K*D, D] x [D, N]
    product) + NKD (the shift); |y|^2, 2NKD; log-sum-exp and the responsibilities, about 6NK;
    r y, NKD; s = sum r y, NKD; the scatter sum r y y^T, 2NKD^2 (K batched [D, N] x [N, D])."""
    return 4 * n * k * d * d + 5 * n * k * d + 6 * n * k


def make_data(n, d, k, seed=0, spread=4.0):
    """n points from k random full-covariance Gaussians in d dimensions; means ~ N(0, spread^2)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=spread, size=(k, d))
    factors = rng.normal(size=(k, d, d)) / np.sqrt(d)
    z = rng.integers(0, k, n)
    x = rng.normal(size=(n, d))
    for j in range(k):  # component by component: O(N D) memory at any N
        rows = z == j
        x[rows] = means[j] + x[rows] @ factors[j].T
    return x


def start(x, k, seed=1):
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    means = x[rng.choice(len(x), k, replace=False)]
    return np.full(k, 1.0 / k), means, np.tile(np.eye(d), (k, 1, 1))


def time_sklearn(x, init, iters):
    weights, means, prec = init
    model = GaussianMixture(len(weights), tol=0.0, max_iter=iters, weights_init=weights,
                            means_init=means, precisions_init=prec)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        begin = time.perf_counter()
        model.fit(x)
    return time.perf_counter() - begin


def time_jax(x, init, iters, chunk_size=None):
    weights, means, prec = init
    pc = gmm.precisions_cholesky_from_precisions(jnp.asarray(prec, x.dtype), 'full')
    begin = time.perf_counter()
    params, _ = em.fit(x, jax.random.key(0), len(weights), tol=0.0, max_iter=iters,
                       init={'weights': weights, 'means': means, 'precisions_cholesky': pc},
                       chunk_size=chunk_size)
    jax.block_until_ready(params)
    return time.perf_counter() - begin


def measure_per_iteration(n, d, k, lo, hi, repeats):
    """Seconds per EM iteration, name -> one slope per repeat, of 'jax f32', 'jax f64' and three
    scikit-learn settings (float64 at the BLAS's thread count; float64 and float32 on one
    thread), each run alternating with the others."""
    x64 = make_data(n, d, k)
    x32 = x64.astype(np.float32)
    xj = jnp.asarray(x32)
    with jax.enable_x64(True):
        xj64 = jnp.asarray(x64)
    init = start(x64, k)
    for iters in (lo, hi):  # compile both loop lengths before timing
        time_jax(xj, init, iters)
        time_jax64(xj64, init, iters)
    one_thread = lambda run: (lambda i: _with_one_blas_thread(run, i))
    runs = {'sklearn f64': lambda i: time_sklearn(x64, init, i),
            'sklearn f64 1-thr': one_thread(lambda i: time_sklearn(x64, init, i)),
            'sklearn f32 1-thr': one_thread(lambda i: time_sklearn(x32, init, i)),
            'jax f32': lambda i: time_jax(xj, init, i),
            'jax f64': lambda i: time_jax64(xj64, init, i)}
    return alternating_slopes(runs, lo, hi, repeats)


def time_jax64(x, init, iters):
    """time_jax on float64 data, with JAX's 64-bit mode on for the call."""
    with jax.enable_x64(True):
        return time_jax(x, init, iters)


def alternating_slopes(runs, lo, hi, repeats):
    """name -> [(t(hi) - t(lo)) / (hi - lo)] * repeats seconds per iteration, where runs[name](i)
    times i iterations; each repeat runs every name once, so a slow stretch hits all alike."""
    slopes = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            slopes[name].append((run(hi) - run(lo)) / (hi - lo))
    return slopes


def blocks(args):
    """Time per iteration by rows per block (em.fit's chunk_size), alternating, median ratios."""
    x = jnp.asarray(make_data(args.n, args.d, args.k).astype(np.float32))
    init = start(np.asarray(x), args.k)
    default = gmm.default_chunk_size(args.k, args.d)
    sizes = sorted({default, *(int(s) for s in args.block_sizes.split(','))})
    for size in sizes:  # compile both loop lengths before timing
        for iters in (args.lo, args.hi):
            time_jax(x, init, iters, size)
    runs = {size: (lambda i, size=size: time_jax(x, init, i, size)) for size in sizes}
    slopes = alternating_slopes(runs, args.lo, args.hi, args.repeats)
    flops = iteration_flops(args.n, args.d, args.k)
    print(f'EM per iteration by rows per block, N={args.n}, D={args.d}, K={args.k}, float32, '
          f'slope over {args.lo}..{args.hi} iterations, median of {args.repeats} alternating runs; '
          f'{flops / 1e9:.2f} GFLOP an iteration; default {default} rows')
    print(f'{"rows":>7}{"ms / iter":>11}{"GFLOP/s":>9}{"vs default":>12}   all runs (ms)')
    for size in sizes:
        ratio = np.median(np.array(slopes[size]) / np.array(slopes[default]))
        median = float(np.median(slopes[size]))
        runs_ms = ' '.join(f'{1e3 * v:.0f}' for v in slopes[size])
        print(f'{size:>7}{1e3 * median:>11.1f}{flops / median / 1e9:>9.1f}{ratio:>11.2f}x   '
              f'{runs_ms}')


def per_iteration(args):
    lo, hi = args.lo, args.hi
    slopes = measure_per_iteration(args.n, args.d, args.k, lo, hi, args.repeats)
    median = {name: float(np.median(v)) for name, v in slopes.items()}
    best_sklearn = min(v for name, v in median.items() if name.startswith('sklearn'))
    print(f'EM per iteration, N={args.n}, D={args.d}, K={args.k}, full covariances, '
          f'slope over {lo}..{hi} iterations, median of {args.repeats}')
    print(f'{"implementation":<20}{"ms / iter":>10}{"vs jax":>8}   all runs (ms)')
    for name, value in median.items():
        runs_ms = ' '.join(f'{1e3 * v:.0f}' for v in slopes[name])
        print(f'{name:<20}{1e3 * value:>10.1f}{value / median["jax f32"]:>7.1f}x   {runs_ms}')
    flops = iteration_flops(args.n, args.d, args.k)
    for name in ('jax f32', 'jax f64'):
        print(f'{name} speed-up over the fastest scikit-learn setting: '
              f'{best_sklearn / median[name]:.1f}x; at {flops / median[name] / 1e9:.1f} GFLOP/s')
    print('(1-thr: OpenBLAS held to one thread; 2 threads stall when other jobs share the cores)')


def _with_one_blas_thread(run, iters):
    with threadpool_limits(1):
        return run(iters)


def full_fit(x, k):
    """(first call incl. compilation, second call) wall seconds of a default fit, and its n_iter."""
    times = []
    for _ in range(2):
        begin = time.perf_counter()
        params, info = em.fit(x, jax.random.key(0), k)
        jax.block_until_ready(params)
        times.append(time.perf_counter() - begin)
    return times[0], times[1], int(info['n_iter'])


def scaling(args):
    print('Full GMM fit, float32, default settings: k-means++ and Lloyd initialisation, then EM to')
    print('tol=1e-3 or max_iter=100; overlapping components (means ~ N(0, I)), so EM runs a while')
    print(f'{"N":>9}{"D":>4}{"K":>4}{"first call s":>14}{"second call s":>15}{"n_iter":>8}'
          f'{"ms / EM iter*":>15}{"data MiB":>10}{"max RSS MiB**":>15}')
    sizes = [n for n in (125_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000)
             if n <= args.max_n]
    configs = ([(n, 16, 16) for n in sizes]
               + [(200_000, 16, k) for k in (4, 8, 32, 64)]
               + [(200_000, d, 16) for d in (4, 8, 32, 64)])
    for n, d, k in configs:
        x = jnp.asarray(make_data(n, d, k, spread=1.0).astype(np.float32))
        first, second, n_iter = full_fit(x, k)
        init = start(np.asarray(x), k)
        for iters in (2, 7):  # compile both loop lengths
            time_jax(x, init, iters)
        slope = np.median(alternating_slopes({'jax': lambda i, x=x: time_jax(x, init, i)}, 2, 7,
                                             2)['jax'])
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f'{n:>9}{d:>4}{k:>4}{first:>14.2f}{second:>15.2f}{n_iter:>8}{1e3 * slope:>15.1f}'
              f'{x.nbytes / 2 ** 20:>10.0f}{rss:>15.0f}', flush=True)
        del x
    print('* EM iteration alone, slope over 2..7 iterations from a fixed start, median of 2')
    print('** the process\'s high-water mark so far (N rises first): beyond the data (and the host')
    print('   copies make_data builds), EM\'s working memory is a few blocks of rows, not O(N)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--n', type=int, default=200_000)
    parser.add_argument('--d', type=int, default=16)
    parser.add_argument('--k', type=int, default=16)
    parser.add_argument('--lo', type=int, default=2)
    parser.add_argument('--hi', type=int, default=7)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--scaling', action='store_true')
    parser.add_argument('--max_n', type=int, default=10_000_000, help='--scaling: largest N')
    parser.add_argument('--blocks', action='store_true', help='sweep rows per block')
    parser.add_argument('--block_sizes', default='256,512,1024,2048,4096,8192,16384')
    args = parser.parse_args()
    (scaling if args.scaling else blocks if args.blocks else per_iteration)(args)


if __name__ == '__main__':
    main()
