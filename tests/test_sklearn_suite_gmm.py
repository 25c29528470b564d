"""scikit-learn's own GaussianMixture tests, run against genmodels.classical.GaussianMixture.

The test file ships inside the installed scikit-learn (sklearn/mixture/tests/
test_gaussian_mixture.py). It is read at collection time, its one import of GaussianMixture is
swapped for ours, and its tests run here as written: the parameter checks and their messages,
fit against the generating parameters for every covariance type, predict and predict_proba,
restarts, warm start, convergence warnings, verbose output, scores, BIC and AIC, regularisation,
sampling, max_iter=0, float32 and float64 dtypes. scikit-learn's private helpers that the file uses
as references (`_estimate_gaussian_parameters`, `_compute_precision_cholesky`) stay scikit-learn's.

The fixtures come from scikit-learn's conftest: `global_random_seed` is its default seed (42) and
`global_dtype` runs both float64 and float32 (scikit-learn runs float32 only on request).
"""

import pathlib

import numpy as np
import pytest
import sklearn

SOURCE = pathlib.Path(sklearn.__file__).parent / 'mixture' / 'tests' / 'test_gaussian_mixture.py'
IMPORT = 'from sklearn.mixture import GaussianMixture\n'
OURS = 'from genmodels.classical import GaussianMixture\n'

# The tests that cannot apply to another implementation, with why:
NOT_APPLICABLE = (
    # exercise only scikit-learn's private helpers (sufficient statistics, log-determinants and
    # log-probabilities from sklearn.mixture._gaussian_mixture), never the estimator
    'test_suffstat_sk_full', 'test_suffstat_sk_tied', 'test_suffstat_sk_diag',
    'test_gaussian_suffstat_sk_spherical', 'test_compute_log_det_cholesky',
    'test_gaussian_mixture_log_probabilities',
    # call the estimator's private methods `_set_parameters` and `_initialize`
    'test_gaussian_mixture_precisions_init',
    # monkeypatches sklearn.mixture._gaussian_mixture._estimate_gaussian_parameters and counts
    # its calls
    'test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters',
    # scikit-learn's array API dispatch (its numpy code on torch/cupy arrays); our estimator
    # computes in jax whatever the input
    'test_gaussian_mixture_array_api_compliance',
    'test_gaussian_mixture_raises_where_array_api_not_implemented',
)

_code = SOURCE.read_text()
if IMPORT not in _code:  # a scikit-learn upgrade moved the import: fail loudly, not silently
    raise RuntimeError(f'{SOURCE} no longer contains {IMPORT!r}; update this module.')
exec(compile(_code.replace(IMPORT, OURS), str(SOURCE), 'exec'), globals())
assert GaussianMixture.__module__.startswith('genmodels.')  # noqa: F821 (defined by the exec)
for _name in NOT_APPLICABLE:
    del globals()[_name]  # a KeyError here: scikit-learn renamed a test; update the list


@pytest.fixture
def global_random_seed():
    return 42


@pytest.fixture(params=[np.float64, np.float32], ids=['float64', 'float32'])
def global_dtype(request):
    return request.param
