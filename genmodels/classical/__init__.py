"""Classical density estimators in jax.numpy, with scikit-learn compatible front ends.

Pure functional core over plain dict pytrees (checkpointable; what a classical family's
`fit` / `log_likelihood` / `sample` wrap):
  gaussian  closed-form Gaussian maximum likelihood: fit, log_prob, sample
  kde       Gaussian kernel density estimation: fit, log_density (blocked), cv_factor, sample
  em        Gaussian mixtures by EM: fit (jit, restarts in one program, mesh-aware), m_step
  gmm       mixture densities: log_prob, responsibilities, sample, bic, aic
  kmeans    k-means++, random seeding, Lloyd iterations (EM initialisation)
  chunks    fixed-size row blocks (bounded memory)

scikit-learn estimators (`*_estimator.py`, sharing `sklearn_interop.py`): GaussianMixture,
KernelDensity, GaussianMLE.
"""

from genmodels.classical.gaussian_estimator import GaussianMLE
from genmodels.classical.gmm_estimator import GaussianMixture
from genmodels.classical.kde_estimator import KernelDensity

__all__ = ['GaussianMixture', 'KernelDensity', 'GaussianMLE']
