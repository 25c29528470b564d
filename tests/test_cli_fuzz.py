"""Bad input through train.py and eval.py: every case a one-line error that says what to do, a
non-zero exit, no traceback, no new workdir, and every existing file untouched."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np

from genmodels import trainer
from tests import helpers
from tests.test_trainer import ROOT, XLA_FLAGS

VAE = ['--config', 'configs/vae_mnist.py:smoke']


def _train_cases(data_dir: str, run: str, new: str, a_file: str, bad_json: str, bad_data: str):
    """(argv, expected text of the error). `new` is a workdir path that must not appear;
    `bad_data` holds a folder with a corrupt PNG and an .npz of float pixels."""
    d = f'--config.data.data_dir={data_dir}'
    w = ['--workdir', new]
    return [
        (VAE + w + [d, f'--config.data.name=images:{bad_data}/corrupt'],
         f'cannot read {bad_data}/corrupt/broken.png as an image'),
        (VAE + w + [d, f'--config.data.name=arrays:{bad_data}/float.npz'], 'save uint8'),
        (VAE + w + [d, f'--config.data.name=images:{bad_data}/empty'], 'holds no PNG or JPEG'),
        (VAE + w + ['--config.train.num_stepz=3'], 'did you mean num_steps'),
        (VAE + w + ['--config.train.num_steps=ten'], "invalid literal for int()"),
        (VAE + w + ['--config.train.num_steps=-5'], 'train.num_steps'),
        (VAE + w + ['--config.train.batch_size=0'], 'batch_size'),
        (VAE + w + ['--config.optimizer.learning_rate=-1'], 'learning_rate must be positive'),
        (VAE + w + ['--config.eval.num_samples=-3'], 'num_samples'),
        (VAE + w + [d, '--config.train.batch_size=100000'], 'exceeds the 4500 examples'),
        (VAE + w + [d, '--config.data.name=mnsit'], "unknown dataset 'mnsit'"),
        (VAE + w + [d, '--config.data.train_split=train[:0]'], 'no examples'),
        (VAE + w + [d, '--config.data.train_split=validation'], "has no split 'validation'"),
        (VAE + w + ['--config.objective=elbow'], "unknown objective 'elbow'"),
        (['--config', 'configs/nope.py'] + w, 'cannot load config file'),
        (['--config', 'configs/vae_mnist.py:smok'] + w, "unknown config argument 'smok'"),
        (['--config', 'configs/ddpm_grid25.py:smoke'] + w + ['--config.model.beta_end=1.5'],
         'linear schedule needs 0 < model.beta_start <= model.beta_end < 1'),
        (['--config', 'configs/ddpm_grid25.py:smoke'] + w + ['--config.model.num_timesteps=0'],
         'num_timesteps'),
        (['--config', 'configs/gan_grid25.py:smoke'] + w + ['--config.objective=nope'],
         "unknown objective 'nope'"),
        (['--config', 'configs/gmm_toy2d.py'] + w + [d, '--config.model.n_components=100000'],
         'n_components'),
        (['--config', 'configs/kde_digits.py'] + w + [d, '--config.model.bandwidth=-1'],
         'bandwidth'),
        (VAE + ['--workdir', a_file], 'is a file'),
        (VAE + ['--workdir', os.path.join(a_file, 'w')], 'which is a file'),
        (['--config', 'configs/gmm_toy2d.py', '--workdir', run, d], 'holds a run with a different'),
        (VAE + ['--workdir', bad_json, d], 'is not readable JSON'),
        (VAE + w + ['extra_argument'], 'unexpected arguments'),
    ]


def _eval_cases(run: str, new: str, a_file: str, bad_json: str):
    return [
        (['--workdir', new], 'does not exist'),
        (['--workdir', a_file], 'is a file'),
        (['--workdir', run, '--set', 'sampler.guidance_scale=3'], 'sampler.guidance_scale'),
        (['--workdir', run, '--set', 'eval.num_samples=abc'], 'eval.num_samples'),
        (['--workdir', run, '--set', 'model.latent_dim=3'], 'model.latent_dim'),
        (['--workdir', run, '--set', 'nonsense'], 'section.key=value'),
        (['--workdir', run, '--iwae_k=-1'], 'iwae_k'),
        (['--workdir', run, '--num_samples=-1'], 'num_samples'),
        (['--workdir', bad_json], 'is not readable JSON'),
        (['--workdir', run, 'extra_argument'], 'unexpected arguments'),
    ]


def _snapshot(path: str) -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(folder, name), 'rb') as f:
                out[os.path.relpath(os.path.join(folder, name), path)] = (
                    hashlib.sha256(f.read()).hexdigest())
    return out


def _run_cases(script: str, cases) -> list[dict]:
    argvs = [argv for argv, _ in cases]
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'cli_driver.py'), ROOT,
                          script, json.dumps(argvs)], capture_output=True, text=True,
                         timeout=600, env={**os.environ, 'XLA_FLAGS': XLA_FLAGS})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bad_input_through_train_py_and_eval_py_fails_cleanly(tmp_path, data_dir):
    run = str(tmp_path / 'run')
    config = helpers.smoke_config('vae_mnist', data_dir, helpers.VAE, {'train.num_steps': 4})
    trainer.train_and_evaluate(config, run)
    bad_json = str(tmp_path / 'bad_json')
    os.makedirs(bad_json)
    with open(os.path.join(bad_json, 'config.json'), 'w') as f:
        f.write('{"family": "va')
    a_file = str(tmp_path / 'a_file')
    with open(a_file, 'w') as f:
        f.write('not a directory')
    new = str(tmp_path / 'new')
    bad_data = tmp_path / 'bad_data'
    (bad_data / 'corrupt').mkdir(parents=True)
    (bad_data / 'corrupt' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(30))
    (bad_data / 'empty').mkdir()
    np.savez(bad_data / 'float.npz', x=np.zeros((4, 8, 8, 1), np.float32))
    before = _snapshot(str(tmp_path))

    cases = {'train': _train_cases(data_dir, run, new, a_file, bad_json, str(bad_data)),
             'eval': _eval_cases(run, new, a_file, bad_json)}
    failures = []
    for script, script_cases in cases.items():
        for (argv, expected), result in zip(script_cases, _run_cases(script, script_cases)):
            lines = [line for line in result['stderr'].splitlines() if line.strip()]
            ok = (result['code'] not in (0, 99) and 'Traceback' not in result['stderr']
                  and lines and lines[-1].startswith('error: ')
                  and expected.lower() in lines[-1].lower())
            if not ok:
                failures.append(f'{script}.py {" ".join(argv)}\n    exit {result["code"]}: '
                                f'{result["stderr"][-600:]}')
    assert not failures, f'{len(failures)} bad:\n' + '\n'.join(failures)
    assert not os.path.exists(new)
    assert _snapshot(str(tmp_path)) == before
