"""Shared fixtures."""

import atexit
import shutil
import tempfile

import jax
import pytest

from genmodels import bundled, xla_cpu

xla_cpu.configure()  # the XLA:CPU settings train.py runs with; subprocesses inherit them

# Many tests compile the same small programs (the tiny VAE's init, step and evaluation; a
# single-seed run beside its seed lanes). JAX's persistent compilation cache, for this test
# process only and emptied at exit, compiles each once: test_trainer.py and test_contract.py
# went from 286 s to 201 s. A hit returns the executable XLA would build for the same program
# and options, so what the tests check is unchanged. Subprocesses (train.py, the multi-device
# and kill tests) do not inherit it: JAX writes cache files in place, and a SIGKILL mid-write
# would leave a truncated entry.
_CACHE = tempfile.mkdtemp(prefix='genmodels-test-xla-cache-')
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.1)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory) -> str:
    """A TFDS data dir holding both bundled datasets, built once per test session."""
    path = str(tmp_path_factory.mktemp('tensorflow_datasets'))
    for name in bundled.BUNDLED:
        bundled.prepare(name, path)
    return path
