"""Every config file loads, validates, and has a smoke variant and a runnable docstring."""

import glob
import importlib
import os

import pytest

from genmodels import families

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                 if not os.path.basename(p).startswith(('_', 'common')))


@pytest.mark.parametrize('name', CONFIGS)
def test_config_validates_with_and_without_smoke(name):
    module = importlib.import_module(f'configs.{name}')
    assert f'python train.py --config configs/{name}.py' in module.__doc__
    for arg in (None, 'smoke'):
        families.validated(module.get_config(arg))
    with pytest.raises(ValueError, match='unknown config argument'):
        module.get_config('smoek')
