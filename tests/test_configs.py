"""Every config file loads, validates, and has a smoke variant and a runnable docstring."""

import glob
import importlib
import json
import os

import ml_collections
import pytest

from genmodels import config as config_lib, families

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


# Every config's config.json as train.py saved it on 2026-12-01 (gan_grid25's from a run made before
# loss.info_continuous_weight existed). A schema key added later without an ADDED_KEYS entry (the
# trainer's in config.py, or the family's) fails here: workdirs saved before it would no longer
# resume or evaluate.
with open(os.path.join(ROOT, 'tests', 'data', 'saved_configs.json')) as _f:
    SAVED = json.load(_f)


@pytest.mark.parametrize('name', sorted(SAVED))
def test_workdirs_saved_by_earlier_versions_still_load(name, tmp_path):
    with open(tmp_path / 'config.json', 'w') as f:
        json.dump(SAVED[name], f)
    families.validated(ml_collections.ConfigDict(families.read_saved(str(tmp_path))))


def test_a_family_fills_in_the_keys_it_added_and_only_into_its_own_runs(tmp_path):
    """The GAN's ADDED_KEYS come back with their values in a GAN run saved without them (the
    sampler section included); a VAE run saved beside it gets none of them."""
    gan = json.loads(json.dumps(SAVED['dcgan_mnist']))
    added = families.added_keys('gan')
    for name in added:
        section, key = name.split('.')
        gan.get(section, {}).pop(key, None)
    for name, saved in (('gan', gan), ('vae', SAVED['vae_mnist'])):
        (tmp_path / name).mkdir()
        with open(tmp_path / name / 'config.json', 'w') as f:
            json.dump(saved, f)
    restored = families.read_saved(str(tmp_path / 'gan'))
    assert 'sampler' not in gan and restored['sampler'] == {'jacobian_truncation': 0.0}
    assert {n: restored[n.split('.')[0]][n.split('.')[1]] for n in added} == added
    families.validated(ml_collections.ConfigDict(restored))
    # The VAE run gets the trainer's added keys (config.ADDED_KEYS) and its own family's
    # (model.prior, ...), nothing of the GAN's.
    vae = json.loads(json.dumps(SAVED['vae_mnist']))
    for (section, key), (_, value) in config_lib.ADDED_KEYS.items():
        vae[section].setdefault(key, value)
    vae_added = families.added_keys('vae')
    assert vae_added and not set(vae_added) & set(added)
    for name, value in vae_added.items():
        section, key = name.split('.')
        assert key not in vae[section]  # saved before the VAE added it
        vae[section][key] = value
    assert families.read_saved(str(tmp_path / 'vae')) == vae
