"""EM time per iteration: genmodels.classical (jax) vs scikit-learn's GaussianMixture.

  .venv/bin/python -m benchmarks.bench_em                  # N=200,000, D=16, K=16, full covariances
  .venv/bin/python -m benchmarks.bench_em --scaling        # full fits: N up to 1e6, and K, D sweeps

Both start from the same weights, means and precisions and run a fixed number of iterations (tol=0).
Per-iteration time is the slope (t(hi) - t(lo)) / (hi - lo), which cancels set-up and the final E-step;
runs alternate between the two implementations and the table reports medians over --repeats.
"""

import argparse
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.mixture import GaussianMixture

from genmodels.classical import em, gmm


def make_data(n, d, k, seed=0):
  """n points from k random full-covariance Gaussians in d dimensions."""
  rng = np.random.default_rng(seed)
  means = rng.normal(scale=4.0, size=(k, d))
  factors = rng.normal(size=(k, d, d)) / np.sqrt(d)
  z = rng.integers(0, k, n)
  return means[z] + np.einsum('nde,ne->nd', factors[z], rng.normal(size=(n, d)))


def start(x, k, seed=1):
  rng = np.random.default_rng(seed)
  d = x.shape[1]
  return np.full(k, 1.0 / k), x[rng.choice(len(x), k, replace=False)], np.tile(np.eye(d), (k, 1, 1))


def time_sklearn(x, init, iters):
  weights, means, prec = init
  model = GaussianMixture(len(weights), tol=0.0, max_iter=iters, weights_init=weights,
                          means_init=means, precisions_init=prec)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    begin = time.perf_counter()
    model.fit(x)
  return time.perf_counter() - begin


def time_jax(x, init, iters):
  weights, means, prec = init
  pc = gmm.precisions_cholesky_from_precisions(jnp.asarray(prec, x.dtype), 'full')
  begin = time.perf_counter()
  params, _ = em.fit(x, jax.random.key(0), len(weights), tol=0.0, max_iter=iters,
                     init={'weights': weights, 'means': means, 'precisions_cholesky': pc})
  jax.block_until_ready(params)
  return time.perf_counter() - begin


def per_iteration(args):
  x64 = make_data(args.n, args.d, args.k)
  x32 = x64.astype(np.float32)
  xj = jnp.asarray(x32)
  init = start(x64, args.k)
  lo, hi = args.lo, args.hi
  for iters in (lo, hi):  # compile both loop lengths before timing
    time_jax(xj, init, iters)
  runs = {'sklearn float64': (lambda i: time_sklearn(x64, init, i)),
          'sklearn float32': (lambda i: time_sklearn(x32, init, i)),
          'jax float32': (lambda i: time_jax(xj, init, i))}
  slopes = {name: [] for name in runs}
  for _ in range(args.repeats):
    for name, run in runs.items():
      slopes[name].append((run(hi) - run(lo)) / (hi - lo))
  median = {name: float(np.median(v)) for name, v in slopes.items()}
  print(f'EM per iteration, N={args.n}, D={args.d}, K={args.k}, full covariances, '
        f'slope over {lo}..{hi} iterations, median of {args.repeats}')
  print(f'{"implementation":<18}{"ms / iteration":>16}{"speed-up":>10}   all runs (ms)')
  for name, value in median.items():
    ratio = median['sklearn float64'] / value
    runs_ms = ' '.join(f'{1e3 * v:.0f}' for v in slopes[name])
    print(f'{name:<18}{1e3 * value:>16.1f}{ratio:>9.1f}x   {runs_ms}')
  print(f'jax vs sklearn on the same float32 data: '
        f'{median["sklearn float32"] / median["jax float32"]:.1f}x')


def full_fit(n, d, k, seed=0):
  """(first call incl. compilation, second call) wall seconds of a default fit, and its n_iter."""
  x = jnp.asarray(make_data(n, d, k, seed).astype(np.float32))
  times = []
  for _ in range(2):
    begin = time.perf_counter()
    params, info = em.fit(x, jax.random.key(0), k)
    jax.block_until_ready(params)
    times.append(time.perf_counter() - begin)
  return times[0], times[1], int(info['n_iter'])


def scaling(_):
  print('Full GMM fit (k-means++ and Lloyd initialisation, EM to tol=1e-3, max_iter=100), float32')
  print(f'{"N":>9}{"D":>4}{"K":>4}{"first call s":>14}{"second call s":>15}{"n_iter":>8}{"ms / EM iter*":>15}')
  configs = ([(n, 16, 16) for n in (125_000, 250_000, 500_000, 1_000_000)]
             + [(200_000, 16, k) for k in (4, 8, 32, 64)] + [(200_000, d, 16) for d in (4, 8, 32, 64)])
  for n, d, k in configs:
    first, second, n_iter = full_fit(n, d, k)
    x = jnp.asarray(make_data(n, d, k).astype(np.float32))
    init = start(np.asarray(x), k)
    time_jax(x, init, 2), time_jax(x, init, 7)
    slope = np.median([(time_jax(x, init, 7) - time_jax(x, init, 2)) / 5 for _ in range(3)])
    print(f'{n:>9}{d:>4}{k:>4}{first:>14.2f}{second:>15.2f}{n_iter:>8}{1e3 * slope:>15.1f}')
  print('* EM iteration alone, slope over 2..7 iterations from a fixed start, median of 3')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--n', type=int, default=200_000)
  parser.add_argument('--d', type=int, default=16)
  parser.add_argument('--k', type=int, default=16)
  parser.add_argument('--lo', type=int, default=2)
  parser.add_argument('--hi', type=int, default=7)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--scaling', action='store_true')
  args = parser.parse_args()
  (scaling if args.scaling else per_iteration)(args)


if __name__ == '__main__':
  main()
