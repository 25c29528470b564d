"""Faults a long run meets, each with what is guaranteed (README, Reliability): checkpoints without
their digests, code named by a workdir, two runs on one workdir, changed data, a full disk, failed
reads, checkpoints rotated away while read, stop requests outside the loop, the NaN advice, and
flags that would be silently ignored."""

import json
import os
import signal
import subprocess
import sys

import pytest

from genmodels import config as config_lib, evaluation, trainer
from genmodels.training import checkpoint, train_state, workdir as workdir_lib
from tests import test_cli_fuzz
from tests.helpers import smoke_config, VAE
from tests.test_trainer import (Killed, kill_after, overwrite_in_place, read_metrics, ROOT,
                                warnings_of, XLA_FLAGS)

SHORT = {'train.num_steps': 8}  # checkpoints at steps 4 and 8


def _vae(data_dir, *overrides):
    return smoke_config('vae_mnist', data_dir, VAE, *overrides)


def test_a_checkpoint_without_its_digests_is_unverifiable_and_the_previous_one_is_used(
        tmp_path, data_dir, monkeypatch):
    workdir = str(tmp_path / 'w')
    trainer.train_and_evaluate(_vae(data_dir, SHORT), workdir)
    os.remove(f'{workdir}/checkpoints/8/_CHECKPOINT_METADATA')  # the file holding the digests
    overwrite_in_place(workdir, 8)  # and its bytes damaged: restored unchecked, NaN leaves
    seen = warnings_of(monkeypatch, checkpoint)
    _, _, step = evaluation.restore(workdir)  # a reader moves nothing and reads step 4
    assert step == 4 and os.path.isdir(f'{workdir}/checkpoints/8')
    assert any('step 8 cannot be restored (its sha256 digests' in w and 'read step 4 instead' in w
               for w in seen), seen
    trainer.train_and_evaluate(_vae(data_dir), workdir)  # resume to 12: from 4, 8 moved aside
    assert os.path.isdir(f'{workdir}/checkpoints_unreadable/8')
    assert [m['step'] for m in read_metrics(workdir)] == [2, 4, 6, 8, 10, 12]


def test_a_checkpoint_rotated_away_while_read_is_followed_by_the_next_newest(
        tmp_path, data_dir, monkeypatch):
    workdir = str(tmp_path / 'w')
    trainer.train_and_evaluate(_vae(data_dir, SHORT), workdir)
    restore = checkpoint.restore

    def rotated_during_the_read(mngr, abstract_state, step=None):
        if step == 8:  # a running job's keep-N rotation deletes it as the reader starts
            os.rename(f'{workdir}/checkpoints/8', f'{tmp_path}/gone')
        return restore(mngr, abstract_state, step)

    monkeypatch.setattr(checkpoint, 'restore', rotated_during_the_read)
    seen = warnings_of(monkeypatch, checkpoint)
    _, _, step = evaluation.restore(workdir)
    assert step == 4
    ours = [w for w in seen if 'cannot be restored' in w]
    assert len(ours) == 1 and 'step 8 cannot be restored (it no longer exists' in ours[0]
    assert 'read step 4 instead' in ours[0]


OBJECTIVE = '''
import os
from genmodels.families import vae
open(os.path.join(os.path.dirname(__file__), 'imported'), 'a').write('x')


def elbo(config, params, batch, rng, step):
    return vae.OBJECTIVES['elbo'](config, params, batch, rng, step)
'''


def test_evaluation_never_runs_code_a_workdir_names_and_resume_checks_the_objective(
        tmp_path, data_dir):
    code = tmp_path / 'mine.py'
    code.write_text(OBJECTIVE)
    marker = tmp_path / 'imported'
    workdir = str(tmp_path / 'w')
    config = _vae(data_dir, SHORT, {'objective': f'{code}:elbo'})
    trainer.train_and_evaluate(config, workdir)  # training imports the objective the user named
    assert marker.read_text() == 'x'
    marker.unlink()
    config_lib._load_function.cache_clear()
    evaluation.evaluate_workdir(workdir, max_examples=16)
    assert not marker.exists()  # evaluation did not import it
    code.write_text(OBJECTIVE + '\n# changed\n')
    config.train.num_steps = 12
    with pytest.raises(workdir_lib.WorkdirError, match='other inputs .*objective_sha256'):
        trainer.train_and_evaluate(config, workdir)


def test_resume_on_a_changed_text_corpus_is_refused(tmp_path):
    corpus = tmp_path / 'corpus.txt'
    text = 'the quick brown fox jumps over the lazy dog. ' * 40
    corpus.write_text(text)
    config = smoke_config('ar_text', None, {
        'data.name': f'text:{corpus}', 'train.num_steps': 2, 'train.checkpoint_every': 2,
        'train.figures': False, 'train.figures_every': 0, 'eval.max_examples': 8})
    workdir = str(tmp_path / 'w')
    trainer.train_and_evaluate(config, workdir)
    corpus.write_text(text[::-1])  # the same characters, another corpus
    config.train.num_steps = 4
    with pytest.raises(workdir_lib.WorkdirError, match=r'other inputs .*data\.sha256'):
        trainer.train_and_evaluate(config, workdir)
    assert sorted(os.listdir(f'{workdir}/checkpoints')) == ['2']


HOLDER = '''
import fcntl, sys, time
f = open(sys.argv[1], 'a+')
fcntl.flock(f, fcntl.LOCK_EX)
f.write('train.py (process 4242 on elsewhere, started 2026-01-01 00:00:00)')
f.flush()
print('locked', flush=True)
time.sleep(120)
'''


def test_one_run_per_workdir_and_a_killed_holder_blocks_nothing(tmp_path, data_dir):
    workdir = str(tmp_path / 'w')
    config = _vae(data_dir)
    second = []

    def start_a_second_run_at_step_3(batches):
        for i, batch in enumerate(batches):
            if i == 3:
                with pytest.raises(workdir_lib.WorkdirError) as e:
                    trainer.train_and_evaluate(config, workdir)
                second.append(str(e.value))
            yield batch

    trainer.train_and_evaluate(config, workdir, iterator_hook=start_a_second_run_at_step_3)
    assert second and f'{workdir} is in use by train.py (process {os.getpid()}' in second[0]
    assert [m['step'] for m in read_metrics(workdir)] == [2, 4, 6, 8, 10, 12]  # nothing cut

    # A holder killed with SIGKILL leaves train.lock behind, and its lock goes with it.
    other = str(tmp_path / 'other')
    os.makedirs(other)
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, f'{other}/train.lock'],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(workdir_lib.WorkdirError, match='in use by train.py .process 4242 on '
                                                           'elsewhere'):
            trainer.train_and_evaluate(_vae(data_dir, SHORT), other)
    finally:
        holder.kill()
        holder.wait()
    trainer.train_and_evaluate(_vae(data_dir, SHORT), other)
    assert os.path.exists(f'{other}/train.lock') and os.path.isdir(f'{other}/checkpoints/8')


def _signal_on(monkeypatch, module, name: str):
    """Sends SIGTERM to this process as `module.name` is called."""
    original = getattr(module, name)

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, signalled)


def test_a_stop_request_before_the_loop_or_during_the_final_evaluation_stops_at_once(
        tmp_path, data_dir, monkeypatch):
    workdir = str(tmp_path / 'w')
    config = _vae(data_dir, SHORT)
    with monkeypatch.context() as m:
        _signal_on(m, train_state, 'restore_or_init')
        with pytest.raises(checkpoint.Preempted, match='SIGTERM received before training '
                                                       'started.*rerun the same command'):
            trainer.train_and_evaluate(config, workdir)
    assert not os.path.exists(f'{workdir}/checkpoints/4')
    with monkeypatch.context() as m:
        _signal_on(m, evaluation, 'evaluate_state')
        with pytest.raises(checkpoint.Preempted, match='SIGTERM received during the final '
                                                       'evaluation; the checkpoint of step 8 is '
                                                       'saved'):
            trainer.train_and_evaluate(config, workdir)
    assert not os.path.exists(f'{workdir}/eval.json')
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL or 'StopRequests' not in repr(
        signal.getsignal(signal.SIGTERM))  # the previous handler is back
    trainer.train_and_evaluate(config, workdir)  # the rerun evaluates the saved step
    assert json.load(open(f'{workdir}/eval.json'))['step'] == 8


def test_the_nan_advice_works_a_lower_learning_rate_resumes(tmp_path, data_dir):
    workdir = str(tmp_path / 'w')
    config = _vae(data_dir)
    with pytest.raises(Killed):
        trainer.train_and_evaluate(config, workdir, iterator_hook=kill_after(6))
    config.optimizer.learning_rate /= 10  # what the NaN message advises
    trainer.train_and_evaluate(config, workdir)  # resumes from step 4 instead of refusing
    assert [m['step'] for m in read_metrics(workdir)] == [2, 4, 6, 8, 10, 12]
    with pytest.raises(FloatingPointError, match='--config.optimizer.learning_rate'):
        workdir_lib.check_finite([{'loss': float('nan')}], 4, lambda: 4)


FULL_DISK = '''
import resource, signal, sys
sys.path.insert(0, sys.argv.pop(1))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
import train
from absl import app
from genmodels import cli
from genmodels.training import checkpoint
save = checkpoint.save

def save_then_fill_the_disk(mngr, step, state):
    save(mngr, step, state)
    if step == 4:
        mngr.wait_until_finished()
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))  # no file may grow from here on

checkpoint.save = save_then_fill_the_disk
app.run(train.main, flags_parser=cli.parse_flags)
'''


def test_a_full_disk_is_one_line_naming_the_newest_complete_checkpoint(tmp_path, data_dir):
    workdir = str(tmp_path / 'w')
    flags = [f'--config.{k}={v}' for k, v in {**VAE, 'data.data_dir': data_dir}.items()]
    out = subprocess.run([sys.executable, '-c', FULL_DISK, ROOT, '--config',
                          'configs/vae_mnist.py:smoke', '--workdir', workdir, *flags],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, 'XLA_FLAGS': XLA_FLAGS})
    assert out.returncode == 1, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines()
             if line.strip() and not line.startswith('vae/elbo step ')]  # progress lines
    assert lines == [f'error: no space left to write in {workdir} (the disk is full, or a quota '
                     f'or file-size limit was reached); the newest complete checkpoint is step 4 '
                     f'({workdir}/checkpoints/4), and rerunning the same command resumes from it '
                     f'once space is freed.'], out.stderr[-3000:]
    _, _, step = evaluation.restore(workdir)  # intact, its digests verified
    assert step == 4


def test_bad_eval_flags_and_failed_reads_are_one_line(tmp_path, data_dir):
    run, corrupt = str(tmp_path / 'run'), str(tmp_path / 'corrupt')
    trainer.train_and_evaluate(_vae(data_dir, {'train.num_steps': 4}), run)
    trainer.train_and_evaluate(_vae(data_dir, {'train.num_steps': 4}), corrupt)
    overwrite_in_place(corrupt, 4)
    weights = tmp_path / 'weights.pth'
    weights.write_bytes(b'not used')
    cases = [(['--workdir', run, '--iwae_k=0'], 'iwae_k must be positive'),
             (['--workdir', run, '--max_examples=0'], 'max_examples must be positive'),
             (['--workdir', run, f'--inception_weights={weights}'],
              'use the classifier shipped for it, not InceptionV3'),
             (['--workdir', corrupt], 'no checkpoint in')]
    results = test_cli_fuzz._run_cases('eval', cases)
    failures = []
    for (argv, expected), result in zip(cases, results):
        lines = [line for line in result['stderr'].splitlines() if line.strip()]
        if not (result['code'] == 1 and len(lines) == 1 and lines[0].startswith('error: ')
                and expected in lines[0]):
            failures.append(f'{argv}: exit {result["code"]}, {len(lines)} lines: '
                            f'{result["stderr"][-1500:]}')
    assert not failures, '\n'.join(failures)
