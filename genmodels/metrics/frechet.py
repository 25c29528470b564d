"""Frechet distance between Gaussians, and the feature statistics that feed it (FID).

FID (Heusel et al. 2017, Eq. 6) is the squared Frechet (2-Wasserstein) distance between Gaussians
fitted to two sets of features:
    d^2 = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2}).
Everything here runs in float64 NumPy: the trace term is a difference of large, nearly equal numbers.
"""
import numpy as np


def _clip_roundoff(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with round-off zeroed: below D eps max|w| (numpy's matrix_rank
    tolerance) they are noise, and sqrt would amplify a 1e-16 into a 1e-8 error per direction."""
    return np.where(w > len(w) * np.finfo(w.dtype).eps * np.abs(w).max(), w, 0.0)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root via eigh."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(_clip_roundoff(w))) @ v.T


def trace_sqrt_product(sigma1, sigma2) -> float:
    """Tr((S1 S2)^{1/2}) for PSD S1, S2.

    S1 S2 = S1^{1/2} (S1^{1/2} S2 S1^{1/2}) S1^{-1/2} is similar to the symmetric PSD matrix
    M = S1^{1/2} S2 S1^{1/2}, so Tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i(M)); this needs no inverse
    and stays accurate when S1 or S2 is (nearly) singular, unlike sqrtm of the non-symmetric S1 S2.
    """
    root1 = _psd_sqrt(sigma1)
    m = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sum(np.sqrt(_clip_roundoff(eig))))


def _check_gaussian(mu, sigma, which: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f'{which}: expected mu [D] and sigma [D, D], got mu {mu.shape} and sigma '
                         f'{sigma.shape}')
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise ValueError(f'{which}: mu or sigma holds NaN or Inf; check the features they came from')
    return mu, (sigma + sigma.T) / 2


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID when fed Inception
    pool3 statistics). Inputs may be NumPy or JAX arrays; the result is a Python float."""
    mu1, sigma1 = _check_gaussian(mu1, sigma1, 'first Gaussian')
    mu2, sigma2 = _check_gaussian(mu2, sigma2, 'second Gaussian')
    if mu1.shape != mu2.shape:
        raise ValueError(f'the Gaussians live in different dimensions: {mu1.size} vs {mu2.size}; '
                         'compute both statistics with the same feature extractor')
    diff = mu1 - mu2
    # Heusel et al. 2017, Eq. 6.
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2)
                 - 2.0 * trace_sqrt_product(sigma1, sigma2))


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] (ddof=1, as pytorch-fid and TF-FID use) of
    features [N, D], in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f'features must be [N, D] with N >= 2, got shape {f.shape}')
    return f.mean(axis=0), np.cov(f, rowvar=False, ddof=1).reshape(f.shape[1], f.shape[1])


def fid_from_features(features1, features2) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N1, D] and [N2, D]."""
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))
