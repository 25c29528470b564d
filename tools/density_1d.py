"""Classical density estimators in 1D: Gaussian MLE, misspecified and well-specified mixtures, KDE.

    .venv/bin/python -m tools.density_1d --out workdirs/density_1d

Three demos, each a figure in --out, with the numbers printed as a table and saved to results.json:

  gaussian_mle.png  1. samples of N(--mean, --std^2) under the closed-form MLE density,
                       mu* = (1/N) sum x_n, sigma*^2 = (1/N) sum (x_n - mu*)^2 (PRML 2.121-2.122)
  bumps.png         2. "three bumps but only two Gaussians": samples of bumps_1d (genmodels/data/toy.py)
                       under its exact density and mixtures with K = 2 and K = 3 fitted by EM, and a
                       KDE with its bandwidth chosen by held-out likelihood. Each is scored by its
                       test log-likelihood (nats per example); true minus fitted is a Monte Carlo
                       estimate of KL(p || model), the price of misspecification for K = 2.
  em_trace.png      3. the K = 3 fit's mean log-likelihood per EM iteration: never decreases
                       (Dempster, Laird & Rubin 1977; PRML section 9.4).
"""

import argparse
import json
import os

import jax
import numpy as np

from genmodels import viz
from genmodels.classical import em, gaussian, gmm, kde
from genmodels.data import toy


def draw(seed: int, num_train: int, num_test: int, mean: float, std: float) -> dict:
    """Demo 1's Gaussian training set [N] and bumps_1d's train [N, 1] and test [M, 1] sets: stream
    0 of the seed (the fits use stream 1)."""
    gauss_key, bumps_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0))
    bumps = np.asarray(toy.get('bumps_1d').sample(bumps_key, num_train + num_test))
    return {'gaussian': mean + std * np.asarray(jax.random.normal(gauss_key, (num_train,))),
            'bumps_train': bumps[:num_train], 'bumps_test': bumps[num_train:]}


def score(log_p: np.ndarray, log_q: np.ndarray) -> dict:
    """Test log-likelihood E_p[log q], and KL(p || q) ~= E_p[log p - log q] with its standard error
    (p: the true density; the expectations are means over the test set)."""
    diff = log_p - log_q
    return {'test_log_likelihood': float(np.mean(log_q)), 'kl_estimate': float(np.mean(diff)),
            'kl_stderr': float(np.std(diff) / np.sqrt(len(diff)))}


def gaussian_demo(x: np.ndarray, mean: float, std: float, out: str) -> dict:
    params = gaussian.fit(x)
    grid = np.linspace(x.min() - 0.5, x.max() + 0.5, 400, dtype=np.float32)
    truth = {'mean': np.float32(mean), 'covariance': np.float32(std ** 2)}
    fitted = {'mean': float(params['mean']), 'var': float(params['covariance'])}
    label = f'MLE: mu* = {fitted["mean"]:.3f}, sigma* = {np.sqrt(fitted["var"]):.3f}'
    viz.save_histogram(x, grid, {label: np.exp(gaussian.log_prob(params, grid))},
                       os.path.join(out, 'gaussian_mle.png'),
                       f'N({mean:g}, {std:g}^2): closed-form maximum likelihood',
                       truth=np.exp(gaussian.log_prob(truth, grid)))
    return fitted | {'true_mean': mean, 'true_var': std ** 2}


def bumps_demo(train: np.ndarray, test: np.ndarray, rng: jax.Array, n_init: int,
               out: str) -> dict:
    dist = toy.get('bumps_1d')
    em_key, kde_key = jax.random.split(rng)
    fits = {k: em.fit(train, jax.random.fold_in(em_key, k), k, n_init=n_init, tol=1e-5,
                      max_iter=500) for k in (2, 3)}
    kde_params = kde.fit(train, 'cv', rng=kde_key)
    h = float(kde_params['kernel_cholesky'][0, 0])  # kernel std: f times the data's std
    grid = np.linspace(train.min() - 0.5, train.max() + 0.5, 600, dtype=np.float32)[:, None]
    points = np.concatenate([test, grid])  # one evaluation (and one compile) per density
    log_p = np.asarray(dist.log_prob(points))
    log_q = {f'GMM K = {k}': np.asarray(gmm.log_prob(params, points, 'full'))
             for k, (params, _) in fits.items()}
    log_q['KDE, h by held-out LL'] = np.asarray(kde.log_density(kde_params, points))
    m = len(test)

    curves = {name: np.exp(q[m:]) for name, q in log_q.items()}
    viz.save_histogram(train[:, 0], grid[:, 0], curves, os.path.join(out, 'bumps.png'),
                       'bumps_1d: three bumps, two or three Gaussians', truth=np.exp(log_p[m:]))
    trace = np.asarray(fits[3][1]['lower_bounds'])
    trace = trace[~np.isnan(trace)]  # NaN-padded to max_iter
    viz.save_curve(trace, os.path.join(out, 'em_trace.png'), 'EM on bumps_1d, K = 3',
                   'iteration', 'mean training log-likelihood (nats)')
    return {'true_test_log_likelihood': float(np.mean(log_p[:m])),
            'models': {name: score(log_p[:m], q[:m]) for name, q in log_q.items()},
            'kde_bandwidth': h, 'em_trace': trace.tolist(),
            'em_converged': bool(fits[3][1]['converged'])}


def print_table(results: dict) -> None:
    g, b = results['gaussian'], results['bumps_1d']
    print(f'1. Gaussian MLE, N = {results["num_train"]}')
    print(f'   {"":10s}{"mean":>10s}{"variance":>10s}')
    print(f'   {"true":10s}{g["true_mean"]:10.4f}{g["true_var"]:10.4f}')
    print(f'   {"MLE":10s}{g["mean"]:10.4f}{g["var"]:10.4f}')
    print(f'2. bumps_1d, test log-likelihood (nats per example, M = {results["num_test"]})')
    print(f'   {"model":28s}{"log-lik":>9s}{"KL = true - model":>22s}')
    print(f'   {"true density":28s}{b["true_test_log_likelihood"]:9.4f}')
    for name, s in b['models'].items():
        kl = f'{s["kl_estimate"]:.4f} +- {s["kl_stderr"]:.4f}'
        print(f'   {name:28s}{s["test_log_likelihood"]:9.4f}{kl:>22s}')
    print(f'   (KDE kernel std h = {b["kde_bandwidth"]:.3f})')
    trace = b['em_trace']
    print(f'3. EM, K = 3: {len(trace)} iterations, log-likelihood {trace[0]:.4f} -> '
          f'{trace[-1]:.4f}, smallest step {min(np.diff(trace), default=0.0):.2e}')


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num_train', type=int, default=2000)
    parser.add_argument('--num_test', type=int, default=10_000)
    parser.add_argument('--mean', type=float, default=1.0, help="demo 1's true mean")
    parser.add_argument('--std', type=float, default=2.0, help="demo 1's true standard deviation")
    parser.add_argument('--n_init', type=int, default=10,
                        help='EM restarts: K = 2 has several local optima on bumps_1d')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    if args.num_train < 10 or args.num_test < 1 or not args.std > 0:
        parser.error(f'need --num_train >= 10, --num_test >= 1 and --std > 0; got '
                     f'{args.num_train}, {args.num_test} and {args.std}.')

    data = draw(args.seed, args.num_train, args.num_test, args.mean, args.std)
    fit_key = jax.random.fold_in(jax.random.key(args.seed), 1)
    os.makedirs(args.out, exist_ok=True)
    results = {'num_train': args.num_train, 'num_test': args.num_test, 'seed': args.seed,
               'gaussian': gaussian_demo(data['gaussian'], args.mean, args.std, args.out),
               'bumps_1d': bumps_demo(data['bumps_train'], data['bumps_test'], fit_key,
                                      args.n_init, args.out)}
    with open(os.path.join(args.out, 'results.json'), 'w') as f:
        json.dump(results, f, indent=2)
    print_table(results)
    return results


if __name__ == '__main__':
    main()
