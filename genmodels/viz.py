"""Figures: sample grids, rows of images (reconstructions, interpolations), curves, and densities of
1D and 2D points (histograms, log-density contours, Gaussian ellipses).

Every function takes numpy arrays (images in the data's value range [lo, hi]) and writes one PNG
(`save_text` also a .txt beside it). `save_samples` is the one place that picks the samples figure
for the data's kind (image grid, text, toy points over the true density).
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import jax.numpy as jnp
import matplotlib
import ml_collections

matplotlib.use('Agg')  # No display on training machines.
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402
import numpy as np  # noqa: E402

from genmodels import data  # noqa: E402


def lerp(a: jnp.ndarray, b: jnp.ndarray, num: int) -> jnp.ndarray:
    """Linear interpolation, [D], [D] -> [num, D]."""
    t = jnp.linspace(0.0, 1.0, num)[:, None]
    return (1.0 - t) * a + t * b


def slerp(a: jnp.ndarray, b: jnp.ndarray, num: int) -> jnp.ndarray:
    """Spherical interpolation (White 2016): keeps the norm typical of a Gaussian prior."""
    t = jnp.linspace(0.0, 1.0, num)[:, None]
    cos = jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))
    omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
    so = jnp.sin(omega)
    # Nearly parallel endpoints: slerp tends to lerp.
    safe = so > 1e-6
    wa = jnp.where(safe, jnp.sin((1.0 - t) * omega) / jnp.where(safe, so, 1.0), 1.0 - t)
    wb = jnp.where(safe, jnp.sin(t * omega) / jnp.where(safe, so, 1.0), t)
    return wa * a + wb * b


def _to_display(images: np.ndarray, lo: float, hi: float) -> np.ndarray:
    x = (np.asarray(images, np.float32) - lo) / (hi - lo)
    return np.clip(x, 0.0, 1.0)


def tile(images: np.ndarray, cols: int) -> np.ndarray:
    """[N, H, W, C] -> one [rows*(H+1)-1, cols*(W+1)-1, C] mosaic with 1-pixel gaps."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1, c), np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        out[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = images[i]
    return out


def _show(ax, mosaic: np.ndarray) -> None:
    if mosaic.shape[-1] == 1:
        ax.imshow(mosaic[..., 0], cmap='gray', vmin=0.0, vmax=1.0, interpolation='nearest')
    else:
        ax.imshow(mosaic, interpolation='nearest')
    ax.set_axis_off()


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=150, bbox_inches='tight')
    plt.close(fig)
    os.replace(tmp, path)  # Never leave a half-written figure.
    return path


def save_grid(images: np.ndarray, path: str, title: str, lo: float = 0.0, hi: float = 1.0) -> str:
    cols = int(np.ceil(np.sqrt(len(images))))
    fig, ax = plt.subplots(figsize=(6, 6))
    _show(ax, tile(_to_display(images, lo, hi), cols))
    ax.set_title(title)
    return _save(fig, path)


def save_rows(rows: Sequence[np.ndarray], path: str, labels: Sequence[str], lo: float = 0.0,
              hi: float = 1.0) -> str:
    """One labelled row per array, e.g. data over reconstructions, or interpolation paths."""
    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(cols * 0.6, len(rows) * 0.9), squeeze=False)
    for ax, row, label in zip(axes[:, 0], rows, labels):
        _show(ax, tile(_to_display(row, lo, hi), cols))
        ax.set_title(label, fontsize=8, loc='left')
    return _save(fig, path)


def save_text(texts: Sequence[str], path: str, title: str) -> str:
    """Text samples as a figure (monospace, one block per text, newlines shown as ⏎), and the
    same texts as they are in path's .txt twin."""
    shown = [t.replace('\n', '⏎') for t in texts]
    width = 100
    lines = []
    for i, t in enumerate(shown):
        lines += [t[j:j + width] for j in range(0, max(len(t), 1), width)] + ['']
    fig, ax = plt.subplots(figsize=(width * 0.075, 0.18 * len(lines) + 0.6))
    ax.text(0.0, 1.0, '\n'.join(lines), family='monospace', fontsize=8, va='top', ha='left',
            transform=ax.transAxes)
    ax.set_title(title, loc='left')
    ax.set_axis_off()
    txt = os.path.splitext(path)[0] + '.txt'
    os.makedirs(os.path.dirname(txt) or '.', exist_ok=True)
    with open(txt + '.tmp', 'w', encoding='utf-8') as f:
        f.write('\n\n'.join(f'--- {i}\n{t}' for i, t in enumerate(texts)) + '\n')
    os.replace(txt + '.tmp', txt)
    return _save(fig, path)


def save_curve(values: np.ndarray, path: str, title: str, xlabel: str, ylabel: str) -> str:
    """One curve of values [T] against 1..T, e.g. a log-likelihood per EM iteration."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(1, len(values) + 1), values, marker='.')
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def save_histogram(x: np.ndarray, grid: np.ndarray, densities: dict[str, np.ndarray], path: str,
                   title: str, truth: np.ndarray | None = None) -> str:
    """A density-normalised histogram of 1D samples x [N] under curves p(grid) [G], one per label;
    `truth` [G], if given, is drawn dashed in black as the reference."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(x, bins='auto', density=True, color='0.82', label=f'{len(x)} samples')
    if truth is not None:
        ax.plot(grid, truth, 'k--', lw=1.5, label='true density')
    for label, p in densities.items():
        ax.plot(grid, p, lw=1.5, label=label)
    ax.set_title(title)
    ax.set_xlabel('x')
    ax.set_ylabel('density')
    ax.legend(fontsize=8)
    return _save(fig, path)


def save_log_density_2d(x: np.ndarray, log_densities: dict[str, Callable[[np.ndarray], np.ndarray]],
                        path: str, samples: np.ndarray | None = None) -> str:
    """Filled contours of log-densities, one panel per title, on a 200 x 200 grid over the box of
    the points x [N, 2]; log_densities map grid points [G, 2] to log p [G]. `samples` [M, 2], if
    given, are drawn over the first panel. All panels share 12 nats of contrast below the lowest
    peak, so that the tails compare."""
    lo, hi = np.percentile(x, 0.5, axis=0) - 0.5, np.percentile(x, 99.5, axis=0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)
    fields = {title: np.asarray(log_p(grid)) for title, log_p in log_densities.items()}
    vmin = max(min(f.max() for f in fields.values()) - 12.0, -30.0)
    levels = np.linspace(vmin, max(f.max() for f in fields.values()), 25)
    fig, axes = plt.subplots(1, len(fields), figsize=(5 * len(fields), 4.5), squeeze=False)
    for ax, (title, field) in zip(axes[0], fields.items()):
        ax.contourf(gx, gy, np.maximum(field, vmin).reshape(gx.shape), levels=levels)
        ax.set_title(title)
        ax.set_aspect('equal')
    if samples is not None:
        axes[0, 0].scatter(samples[:, 0], samples[:, 1], s=2, c='w', alpha=0.7)
    return _save(fig, path)


def save_vector_fields_2d(x: np.ndarray, log_density: Callable[[np.ndarray], np.ndarray],
                          fields: dict[str, Callable[[np.ndarray], np.ndarray]], path: str,
                          samples: np.ndarray | None = None, num_arrows: int = 20) -> str:
    """Vector fields (e.g. scores) over one log-density, one panel per title: filled contours of
    log_density (grid points [G, 2] -> [G], 12 nats of contrast as in save_log_density_2d, light
    to dark) on the box of the points x [N, 2], and each field (grid points [G, 2] -> vectors
    [G, 2]) as arrows on a num_arrows x num_arrows grid. An arrow of length |v| / (|v| + median |v|)
    grid cells keeps every direction readable: the far field's large vectors are capped at one
    cell and the small ones near modes still show. `samples` [M, 2], if given, are drawn under
    the arrows (those inside the box)."""
    lo, hi = np.percentile(x, 0.5, axis=0) - 0.5, np.percentile(x, 99.5, axis=0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    field = np.asarray(log_density(np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)))
    levels = np.linspace(max(field.max() - 12.0, -30.0), field.max(), 25)
    px, py = np.meshgrid(np.linspace(lo[0], hi[0], num_arrows),
                         np.linspace(lo[1], hi[1], num_arrows))
    arrows = np.stack([px.ravel(), py.ravel()], -1).astype(np.float32)
    cell = (hi - lo) / (num_arrows - 1)  # [2]: the grid's spacing along x and y
    fig, axes = plt.subplots(1, len(fields), figsize=(5 * len(fields), 4.5), squeeze=False)
    for ax, (title, vector_field) in zip(axes[0], fields.items()):
        ax.contourf(gx, gy, np.maximum(field, levels[0]).reshape(gx.shape), levels=levels,
                    cmap='Blues')
        if samples is not None:
            ax.scatter(samples[:, 0], samples[:, 1], s=1, c='C1', alpha=0.6)
        v = np.asarray(vector_field(arrows), np.float64)
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        v = cell * v / (norm + np.median(norm) + 1e-30)
        ax.quiver(arrows[:, 0], arrows[:, 1], v[:, 0], v[:, 1], angles='xy', scale_units='xy',
                  scale=1.0, color='k', width=0.003, headwidth=4, headlength=4,
                  headaxislength=3.5)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_title(title)
        ax.set_aspect('equal')
    return _save(fig, path)


def save_ellipses(weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, x: np.ndarray,
                  path: str, title: str) -> str:
    """Each Gaussian's {1, 2}-sigma ellipse over the points x [N, 2]: axes 2 r sqrt(eigenvalues of
    Sigma_k), r = 1, 2; weights [K], means [K, 2], covariances [K, 2, 2]; heavier lines for
    heavier components."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x[:, 0], x[:, 1], s=2, c='0.6')
    for weight, mean, cov in zip(weights, means, covariances):
        values, vectors = np.linalg.eigh(cov)
        angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
        for r in (1, 2):
            ax.add_patch(Ellipse(mean, *(2 * r * np.sqrt(values[::-1])), angle=angle,
                                 fill=False, lw=1.5 * min(1.0, 4 * weight + 0.3), color='C3'))
    ax.set_aspect('equal')
    ax.set_title(title)
    return _save(fig, path)


def save_trajectories_2d(paths: np.ndarray, path: str, title: str,
                         target: np.ndarray | None = None) -> str:
    """ODE trajectories [T, N, 2] from their start (black) to their end (blue), over points of the
    target (grey, [M, 2]) when given."""
    paths = np.asarray(paths)
    fig, ax = plt.subplots(figsize=(6, 6))
    if target is not None:
        ax.scatter(target[:, 0], target[:, 1], s=1, c='0.8', zorder=0)
    ax.plot(paths[:, :, 0], paths[:, :, 1], c='olive', alpha=0.3, lw=0.5, zorder=1)
    ax.scatter(paths[0, :, 0], paths[0, :, 1], s=2, c='black', zorder=2)
    ax.scatter(paths[-1, :, 0], paths[-1, :, 1], s=2, c='tab:blue', zorder=3)
    ax.set_aspect('equal')
    ax.set_title(title)
    return _save(fig, path)


SAMPLE_IMAGES, SAMPLE_POINTS = 64, 2500  # samples in a samples figure: images (or texts), points


def num_samples(data_config: ml_collections.ConfigDict, points: int = SAMPLE_POINTS,
                images: int = SAMPLE_IMAGES) -> int:
    """How many samples a samples figure of the data's kind shows: toy points, or images/texts."""
    return points if data.is_toy(data_config.name) else images


def save_samples(data_config: ml_collections.ConfigDict, samples: np.ndarray, path: str, title: str,
                 *, reference: np.ndarray | None = None,
                 log_density: Callable[[np.ndarray], np.ndarray] | None = None,
                 panel_title: str | None = None, num_texts: int = 16) -> list[str]:
    """The samples figure of the data's kind at `path` ([] for toys of more than 2 dimensions).

    Images: a grid in the data's value range. Text: the first `num_texts` samples decoded
    (save_text, with its .txt twin). Toy points: the samples over the true density, on the box of
    `reference` (points of the data [N, ...]; default: the samples): in 1D a histogram under the
    true density; in 2D filled contours of the true log-density (titled `panel_title`, default
    title + ' over the true log-density'), or with `log_density` (the model's, [G, 2] -> [G]) its
    panel, titled `title`, beside the exact one.
    """
    samples = np.asarray(samples)
    if data.is_text(data_config.name):
        return [save_text(data.decode_text(data_config, samples[:num_texts]), path, title)]
    if not data.is_toy(data_config.name):
        return [save_grid(samples, path, title, *data.value_range(data_config))]
    toy = data.toy_distribution(data_config.name)
    points = samples.reshape(len(samples), -1)  # [N, D]
    box = points if reference is None else np.asarray(reference).reshape(len(reference), -1)
    if toy.dim == 1:
        grid = np.linspace(box.min() - 0.5, box.max() + 0.5, 400)
        return [save_histogram(points[:, 0], grid, {}, path, title,
                               truth=np.exp(np.asarray(toy.log_prob(grid))))]
    if toy.dim != 2:
        return []
    if log_density is None:
        panels = {panel_title or f'{title} over the true log-density': toy.log_prob}
    else:
        panels = {title: log_density, f'exact log-density of {toy.name}': toy.log_prob}
    return [save_log_density_2d(box, panels, path, samples=points)]
