"""scikit-learn's own KernelDensity tests, run against genmodels.classical.KernelDensity.

The test file ships inside the installed scikit-learn (sklearn/neighbors/tests/test_kde.py). It is
read at collection time, its one import of KernelDensity is swapped for ours, and its tests are
run here as written: every kernel and bandwidth against its brute-force reference, sampling,
every algorithm and metric, sample weights against repeated rows, pipelines and grid search,
pickling, the unfitted errors. scikit-learn's NearestNeighbors, KDTree (for its list of valid
metrics) and private `kernel_norm` stay scikit-learn's: the file uses them as references.
No test is left out (all 57 apply).
"""

import pathlib

import sklearn

SOURCE = pathlib.Path(sklearn.__file__).parent / 'neighbors' / 'tests' / 'test_kde.py'
IMPORT = 'from sklearn.neighbors import KDTree, KernelDensity, NearestNeighbors'
OURS = ('from sklearn.neighbors import KDTree, NearestNeighbors\n'
        'from genmodels.classical import KernelDensity')

_code = SOURCE.read_text()
if IMPORT not in _code:  # a scikit-learn upgrade moved the import: fail loudly, not silently
    raise RuntimeError(f'{SOURCE} no longer contains {IMPORT!r}; update this module.')
exec(compile(_code.replace(IMPORT, OURS), str(SOURCE), 'exec'), globals())
assert KernelDensity.__module__.startswith('genmodels.')  # noqa: F821 (defined by the exec)
