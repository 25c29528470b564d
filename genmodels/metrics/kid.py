"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel."""
import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for rows of x [M, d], y [N, d] -> [M, N] (Binkowski et al. 2018)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, Lemma 6): the diagonals of k(x,x) and k(y,y) are left out."""
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
                 + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
                 - 2.0 * k_xy.mean())


def kernel_inception_distance(features1, features2, num_subsets: int = 100,
                              subset_size: int = 1000, seed=0) -> tuple[float, float]:
    """Mean and std of the unbiased MMD^2 over `num_subsets` random subsets drawn without
    replacement from each feature set [N1, D], [N2, D].

    The subset size is min(subset_size, N1, N2), as the reference code and clean-fid do, so a small
    sample set still gets a (noisier) estimate. `seed` is an int or a np.random.Generator.
    """
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f'features must be [N1, D] and [N2, D], got {f1.shape} and {f2.shape}')
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise ValueError(f'KID needs at least 2 samples per set, got {len(f1)} and {len(f2)}')
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(f1[rng.choice(len(f1), m, replace=False)],
                            f2[rng.choice(len(f2), m, replace=False)])
              for _ in range(num_subsets)]
    return float(np.mean(values)), float(np.std(values))
