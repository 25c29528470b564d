"""A Gaussian mixture fitted by EM to a 2D toy distribution (genmodels/toy.py), with figures.

    .venv/bin/python -m tools.gmm_toy2d --out workdirs/gmm_toy2d                  # two_moons
    .venv/bin/python -m tools.gmm_toy2d --toy grid_25 --k_max 30 --out workdirs/gmm_grid25

The toys are continuous 2D points, not the integer images that genmodels/data.py serves (and whose
dequantisation and sample metrics train.py's evaluation assumes), so this is a script rather than a
config: it draws train and test sets from the toy, fits mixtures with K = 1..k_max by EM
(genmodels.classical.em), keeps the K with the lowest BIC, and writes to --out:

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

from genmodels import toy
from genmodels.classical import em, gmm

matplotlib.use('Agg')  # No display needed.
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402


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


def plot_ellipses(params: dict, x: np.ndarray, path: str) -> None:
    """Each component's {1, 2}-sigma ellipse: axes 2 r sqrt(eigenvalues of Sigma_k), r = 1, 2."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x[:, 0], x[:, 1], s=2, c='0.6')
    for weight, mean, cov in zip(*(np.asarray(params[key])
                                   for key in ('weights', 'means', 'covariances'))):
        values, vectors = np.linalg.eigh(cov)
        angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
        for r in (1, 2):
            ax.add_patch(Ellipse(mean, *(2 * r * np.sqrt(values[::-1])), angle=angle,
                                 fill=False, lw=1.5 * min(1.0, 4 * weight + 0.3), color='C3'))
    ax.set_aspect('equal')
    ax.set_title(f'GMM, K = {len(params["weights"])}: 1- and 2-sigma ellipses')
    fig.savefig(path, dpi=150, bbox_inches='tight')
    plt.close(fig)


def plot_density(params: dict, dist: toy.Toy, samples: np.ndarray, x: np.ndarray,
                 path: str) -> None:
    lo, hi = np.percentile(x, 0.5, axis=0) - 0.5, np.percentile(x, 99.5, axis=0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)
    fields = {'GMM log-density, with 500 samples': np.asarray(gmm.log_prob(params, grid, 'full')),
              f'exact log-density of {dist.name}': np.asarray(dist.log_prob(grid))}
    vmin = max(min(f.max() for f in fields.values()) - 12.0, -30.0)  # 12 nats of contrast
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, (title, field) in zip(axes, fields.items()):
        levels = np.linspace(vmin, max(f.max() for f in fields.values()), 25)
        ax.contourf(gx, gy, np.maximum(field, vmin).reshape(gx.shape), levels=levels)
        ax.set_title(title)
        ax.set_aspect('equal')
    axes[0].scatter(samples[:, 0], samples[:, 1], s=2, c='w', alpha=0.7)
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
    plot_ellipses(params, np.asarray(x), os.path.join(args.out, 'ellipses.png'))
    plot_density(params, dist, samples, np.asarray(x), os.path.join(args.out, 'density.png'))
    results = {'toy': args.toy, 'num_train': args.num_train, 'num_test': args.num_test,
               'k_bic': best['k'], 'k_aic': min(fits, key=lambda f: f['aic'])['k'],
               'converged': best['converged'], 'test_log_likelihood_nats': model_ll,
               'true_test_log_likelihood_nats': true_ll, 'kl_estimate_nats': true_ll - model_ll}
    with open(os.path.join(args.out, 'results.json'), 'w') as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results))


if __name__ == '__main__':
    main()
