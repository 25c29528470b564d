"""A Gaussian mixture fitted by EM to a 2D toy distribution (genmodels/data/toy.py), with figures.

    .venv/bin/python -m tools.gmm_toy2d --out workdirs/gmm_toy2d                  # two_moons
    .venv/bin/python -m tools.gmm_toy2d --toy grid_25 --k_max 30 --out workdirs/gmm_grid25

It chooses K: it draws train and test sets from the toy, fits mixtures with K = 1..k_max by EM
(genmodels.classical.em), keeps the K with the lowest BIC, and writes to --out (configs/gmm_toy2d.py
then fits the chosen K through train.py and eval.py, on the fixed `toy_two_moons` dataset):

  bic_aic.png    BIC and AIC against K (Schwarz 1978; Akaike 1974)
  ellipses.png   the chosen mixture's 1- and 2-sigma ellipses over the training points
  density.png    its log-density contours with samples, beside the toy's exact log-density
  results.json   the chosen K, the test log-likelihood of the mixture and of the true density (nats
                 per point), and their difference, a Monte Carlo estimate of KL(p || model)
"""

import argparse
import json
import os

import jax
import matplotlib
import numpy as np

from genmodels import viz
from genmodels.classical import em, gmm
from genmodels.data import toy

matplotlib.use('Agg')  # No display needed.
import matplotlib.pyplot as plt  # noqa: E402


def fit_all(x: jax.Array, k_max: int, n_init: int, seed: int) -> list[dict]:
    """One EM fit per K = 1..k_max, with its BIC and AIC on the training points."""
    fits = []
    for k in range(1, k_max + 1):
        params, info = em.fit(x, jax.random.key(seed + k), k, n_init=n_init, max_iter=500)
        fits.append({'k': k, 'params': params, 'converged': bool(info['converged']),
                     'bic': float(gmm.bic(params, x, 'full')),
                     'aic': float(gmm.aic(params, x, 'full'))})
    return fits


def plot_criteria(fits: list[dict], path: str) -> None:
    ks = [f['k'] for f in fits]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ks, [f['bic'] for f in fits], marker='.', label='BIC')
    ax.plot(ks, [f['aic'] for f in fits], marker='.', label='AIC')
    ax.set_xlabel('components K')
    ax.set_ylabel('criterion (lower is better)')
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=150, bbox_inches='tight')
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--toy', default='two_moons', choices=[
        name for name, t in toy.TOYS.items() if t.dim == 2])
    parser.add_argument('--num_train', type=int, default=2000)
    parser.add_argument('--num_test', type=int, default=10_000)
    parser.add_argument('--k_max', type=int, default=20)
    parser.add_argument('--n_init', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', required=True)
    args = parser.parse_args()

    dist = toy.get(args.toy)
    train_key, test_key, sample_key = jax.random.split(jax.random.key(args.seed), 3)
    x = dist.sample(train_key, args.num_train)
    test = dist.sample(test_key, args.num_test)
    fits = fit_all(x, args.k_max, args.n_init, args.seed)
    best = min(fits, key=lambda f: f['bic'])
    params = best['params']
    model_ll = float(np.mean(gmm.log_prob(params, test, 'full')))
    true_ll = float(np.mean(dist.log_prob(test)))
    samples = np.asarray(gmm.sample(params, sample_key, 500, 'full')[0])

    os.makedirs(args.out, exist_ok=True)
    plot_criteria(fits, os.path.join(args.out, 'bic_aic.png'))
    viz.save_ellipses(*(np.asarray(params[key]) for key in ('weights', 'means', 'covariances')),
                      np.asarray(x), os.path.join(args.out, 'ellipses.png'),
                      f'GMM, K = {best["k"]}: 1- and 2-sigma ellipses')
    log_densities = {'GMM log-density, with 500 samples': lambda g: gmm.log_prob(params, g, 'full'),
                     f'exact log-density of {dist.name}': dist.log_prob}
    viz.save_log_density_2d(np.asarray(x), log_densities, os.path.join(args.out, 'density.png'),
                            samples)
    results = {'toy': args.toy, 'num_train': args.num_train, 'num_test': args.num_test,
               'k_bic': best['k'], 'k_aic': min(fits, key=lambda f: f['aic'])['k'],
               'converged': best['converged'], 'test_log_likelihood_nats': model_ll,
               'true_test_log_likelihood_nats': true_ll, 'kl_estimate_nats': true_ll - model_ll}
    with open(os.path.join(args.out, 'results.json'), 'w') as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results))


if __name__ == '__main__':
    main()
