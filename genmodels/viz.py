"""Figures: sample grids, rows of images (reconstructions, interpolations), curves, 1D histograms.

Every function takes numpy arrays in the data's value range [lo, hi] and writes one PNG.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax.numpy as jnp
import matplotlib

matplotlib.use('Agg')  # No display on training machines.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
