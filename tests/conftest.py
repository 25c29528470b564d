"""Shared fixtures."""

import pytest

from genmodels import bundled, xla_cpu

xla_cpu.configure()  # the XLA:CPU settings train.py runs with; subprocesses inherit them


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory) -> str:
    """A TFDS data dir holding both bundled datasets, built once per test session."""
    path = str(tmp_path_factory.mktemp('tensorflow_datasets'))
    for name in bundled.BUNDLED:
        bundled.prepare(name, path)
    return path
