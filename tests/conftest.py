"""Shared fixtures."""

import atexit
import os
import shutil
import tempfile

import jax
import pytest

from genmodels import xla_cpu
from genmodels.data import bundled

xla_cpu.configure()  # the XLA:CPU settings train.py runs with; subprocesses inherit them

# The suite is mostly XLA compiles of small programs, and LLVM's optimisation of the generated code
# is a large part of each: the tiny U-Net's init compiled in 14.1 s at XLA's default level 2 and in
# 4.2 s at level 1, and the CIFAR-10 recipe test took 62 s and 48 s. Level 1 asks LLVM for less
# optimisation of the same programs; the suite passes alike at levels 0, 1 and 2. Level 0 compiles
# faster still but runs slower: tests that run long chains (annealed Langevin, 1,000-step
# samplers) took 3-8x longer. A level already in XLA_FLAGS is kept.
xla_cpu.add_default('--xla_backend_optimization_level', '1')

# Many tests compile the same small programs (the tiny VAE's init, step and evaluation; a
# single-seed run beside its seed lanes). JAX's persistent compilation cache, for this test
# process only and emptied at exit, compiles each once: test_trainer.py and test_contract.py
# went from 286 s to 201 s. A hit returns the executable XLA would build for the same program
# and options, so what the tests check is unchanged. Subprocesses (train.py, the multi-device
# and kill tests) do not inherit it: JAX writes cache files in place, and a SIGKILL mid-write
# would leave a truncated entry. Each pytest-xdist worker keeps its own: a directory shared by
# both needs JAX's file lock, which comes only with its size limit, and with a limit every write
# reads the size and access time of every entry (quadratic in the entries). The suite with one
# shared cache took 15 min 50 s, longer than the 14 min 38 s of its last run without.
# The train.py and eval.py that tests launch keep their default cache (~/.cache/genmodels/xla)
# off, for the same reason: the kill tests would leave truncated entries in the user's cache.
os.environ['GENMODELS_COMPILE_CACHE'] = ''
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


# The tests that took 20 s or more of a `make test` on 2 cores, longest first (measured
# 2026-12-01). They start first, and `make test` hands tests to its two workers one at a time
# (--maxschedchunk 1): in collection order the 2-minute multi-device test could start last and
# leave the other worker idle. A name missing from this list only loses that head start.
SLOW_FIRST = (
    'tests/test_trainer.py::test_eight_devices_and_two_processes_give_the_same_loss_curves_as_one',
    'tests/test_trainer.py::test_sigterm_then_sigkill_at_random_points_then_resume_equals_',
    'tests/test_ddpm.py::test_cifar10_recipe_runs_on_mock_data',
    'tests/test_contract.py::test_gan_seed_lanes_match_single_seed_runs',
    'tests/test_gan.py::test_dcgan_resumes_bit_for_bit_with_batch_norm_and_spectral_norm',
    'tests/test_cli_fuzz.py::test_bad_input_through_train_py_and_eval_py_fails_cleanly',
    'tests/test_step_options.py::test_bfloat16_compute_tracks_the_float32_loss_curve[gan]',
    'tests/test_classical_sklearn_checks.py::test_check_estimator[GaussianMixture]',
    'tests/test_contract.py::test_vae_seed_lanes_match_single_seed_runs',
    'tests/test_gan.py::test_a_short_toy_run_moves_samples_toward_the_data',
    'tests/test_step_options.py::test_accumulated_step_equals_the_large_batch_step[gan]',
    'tests/test_sklearn_suite_gmm.py::test_sample',
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        return next((i for i, name in enumerate(SLOW_FIRST) if item.nodeid.startswith(name)),
                    len(SLOW_FIRST))
    items.sort(key=rank)  # stable: every other test keeps its place
