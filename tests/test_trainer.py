"""The generic loop end to end: outputs, resume, sharding, the NaN guard and bad input."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from configs import ae_mnist
from genmodels import config as config_lib, families, trainer
from genmodels.training import checkpoint, parallel, train_state
from genmodels.training import workdir as workdir_lib
from tests.helpers import DCGAN, DDPM_TOY, EDM_TOY, FM_OT_TOY, VAE, smoke_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XLA_FLAGS = os.environ.get('XLA_FLAGS', '')  # conftest's xla_cpu settings, kept in subprocesses


@pytest.fixture(scope='module')
def straight(tmp_path_factory, data_dir) -> str:
    """The VAE trained 12 steps without interruption: what every interrupted run must end as."""
    workdir = str(tmp_path_factory.mktemp('straight') / 'w')
    trainer.train_and_evaluate(smoke_config('vae_mnist', data_dir, VAE), workdir)
    return workdir


def read_metrics(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


def restore_params(workdir: str, step: int):
    """The saved state of `step` on this process's devices, whatever devices saved it."""
    mngr = checkpoint.manager(workdir, read_only=True)
    sharding = parallel.replicated(parallel.make_mesh())
    return checkpoint.restore_as_saved(mngr, sharding, step)[0]


def test_smoke_on_mock_mnist_writes_every_output(tmp_path):
    """The flax-examples smoke test: the real loop on TFDS mock data."""
    config = smoke_config('vae_mnist', None, VAE, {'train.num_steps': 8})
    config.data.name = 'mnist'
    config.train.figures = True
    config.train.fid_every = 4  # FID of a small sample during training, labelled with its size.
    config.train.fid_num_samples = 32
    config.train.figures_every = 4  # samples from fixed noise, to figures/progress/ and TensorBoard
    workdir = str(tmp_path / 'run')
    with tfds.testing.mock_data(num_examples=64):
        result = trainer.train_and_evaluate(config, workdir)
    assert result['step'] == 8 and np.isfinite(result['nll_nats'])
    assert result['elbo_nats'] <= -result['nll_nats'] + 1e-3  # ELBO <= IWAE bound
    assert json.load(open(os.path.join(workdir, 'eval.json')))['nll_nats'] == result['nll_nats']
    assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['4', '8']
    logs = read_metrics(workdir)
    assert [m['step'] for m in logs if 'loss' in m] == [2, 4, 6, 8]
    fids = [(m['step'], m['fid_mnist_classifier_32samples']) for m in logs if 'loss' not in m]
    assert [s for s, _ in fids] == [4, 8] and all(f > 0 for _, f in fids)
    for name in ('samples', 'reconstructions', 'interpolation'):
        assert os.path.getsize(os.path.join(workdir, 'figures', f'{name}.png')) > 1000
    families.validated(config_lib.from_json(open(os.path.join(workdir, 'config.json')).read()))
    # TensorBoard reads the event files without TensorFlow installed.
    from tensorboard.backend.event_processing import event_accumulator
    events = event_accumulator.EventAccumulator(workdir)
    events.Reload()
    assert [e.step for e in events.Scalars('loss')] == [2, 4, 6, 8]
    progress = sorted(os.listdir(os.path.join(workdir, 'figures', 'progress')))
    assert progress == ['samples_0000004.png', 'samples_0000008.png']
    images = events.Images('samples')
    assert [e.step for e in images] == [4, 8] and all(e.width > 100 for e in images)


def test_autoencoder_trains(tmp_path, data_dir):
    config = ae_mnist.get_config('smoke')
    config.data.data_dir = data_dir
    config.train.figures = False
    result = trainer.train_and_evaluate(config, str(tmp_path / 'ae'))
    losses = [m['loss'] for m in read_metrics(str(tmp_path / 'ae'))]
    assert losses[-1] < losses[0] and 0 < result['recon_mse'] < 0.2


def test_iwae_objective_trains(tmp_path, data_dir):
    config = smoke_config('vae_mnist', data_dir, VAE, {'train.num_steps': 8})
    config.objective = 'iwae'
    config.loss.num_samples = 3
    workdir = str(tmp_path / 'iwae')
    trainer.train_and_evaluate(config, workdir)
    losses = [m['loss'] for m in read_metrics(workdir)]
    # The IWAE-3 bound is tighter than the ELBO sample average: loss = -bound <= -elbo.
    assert losses[-1] < losses[0]
    assert all(m['loss'] <= -m['elbo_nats'] + 1e-3 for m in read_metrics(workdir))


class Killed(Exception):
    pass


def kill_after(n: int):
    def hook(batches):
        for i, batch in enumerate(batches):
            if i == n:
                raise Killed
            yield batch
    return hook


def test_kill_and_resume_equals_uninterrupted_bit_for_bit(tmp_path, data_dir, straight):
    config = smoke_config('vae_mnist', data_dir, VAE)
    resumed = str(tmp_path / 'resumed')
    with pytest.raises(Killed):  # Dies while computing step 7; the last checkpoint is step 4.
        trainer.train_and_evaluate(config, resumed, iterator_hook=kill_after(6))
    assert sorted(os.listdir(os.path.join(resumed, 'checkpoints'))) == ['4']
    trainer.train_and_evaluate(config, resumed)
    a, b = restore_params(straight, 12), restore_params(resumed, 12)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert json.load(open(f'{straight}/eval.json')) == json.load(open(f'{resumed}/eval.json'))
    losses = [[m['loss'] for m in read_metrics(w)] for w in (straight, resumed)]
    assert losses[0] == losses[1] and len(losses[0]) == 6


def signal_after(n: int, signum: int):
    """Sends `signum` to this process while the loop fetches the batch of step n + 1."""
    def hook(batches):
        for i, batch in enumerate(batches):
            if i == n:
                os.kill(os.getpid(), signum)
            yield batch
    return hook


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_signal_saves_the_current_step_and_resume_equals_uninterrupted(
        tmp_path, data_dir, monkeypatch, signum, straight):
    config = smoke_config('vae_mnist', data_dir, VAE)
    stopped = str(tmp_path / 'stopped')
    save = checkpoint.save

    def save_interrupted_by_another_signal(mngr, step, state):
        save(mngr, step, state)  # returns while Orbax still writes in the background
        if step == 7:  # a second signal while the stop's checkpoint is being written
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(checkpoint, 'save', save_interrupted_by_another_signal)
    with pytest.raises(checkpoint.Preempted, match=f'{signal.Signals(signum).name} received: '
                                                   'saved a checkpoint of step 7'):
        trainer.train_and_evaluate(config, stopped, iterator_hook=signal_after(6, signum))
    assert signal.getsignal(signum) is not None and 'StopRequests' not in repr(
        signal.getsignal(signum))  # the previous handlers are back
    assert sorted(os.listdir(f'{stopped}/checkpoints'), key=int) == ['4', '7']
    monkeypatch.setattr(checkpoint, 'save', save)
    trainer.train_and_evaluate(config, stopped)
    assert_same_params(straight, stopped, 12)
    assert json.load(open(f'{straight}/eval.json')) == json.load(open(f'{stopped}/eval.json'))


def test_the_loop_keeps_at_most_two_steps_in_flight(tmp_path, data_dir, monkeypatch):
    """JAX dispatches steps asynchronously: unbounded, the loop would run up to log_every steps
    ahead of the computation, and a stop request would wait for all of them before saving. Each
    step here takes 50 ms and counts itself when it has run."""
    completed = []

    def slow():
        time.sleep(0.05)
        completed.append(1)

    make_train_step = train_state.make_train_step

    def make_slow_train_step(*args, **kwargs):
        step_fn = make_train_step(*args, **kwargs)
        tick = jax.jit(lambda metrics: (jax.debug.callback(slow), metrics)[1])

        def step(state, batch):
            state, metrics = step_fn(state, batch)
            return state, tick(metrics)
        return step

    seen = []

    def hook(batches):
        for i, batch in enumerate(batches):
            seen.append((i, len(completed)))  # steps run when the batch of step i + 1 is fetched
            yield batch

    config = smoke_config('vae_mnist', data_dir, VAE)
    config.train.log_every = config.train.checkpoint_every = 12  # no sync point before the end
    monkeypatch.setattr(train_state, "make_train_step", make_slow_train_step)
    trainer.train_and_evaluate(config, str(tmp_path / 'w'), iterator_hook=hook)
    assert len(completed) == 12 and len(seen) == 12
    # Fetching the batch of step i + 1 follows step i's dispatch and waits for step i - 1.
    assert all(done >= i - 1 for i, done in seen), seen


def warnings_of(monkeypatch, module) -> list[str]:
    """The messages `module` passes to absl's logging.warning from now on (absl's handler setup
    varies with what ran before, so pytest's caplog does not always see them)."""
    seen = []
    monkeypatch.setattr(module.logging, 'warning', lambda msg, *args: seen.append(msg % args))
    return seen


def test_metrics_log_with_a_torn_last_line_resumes_with_a_warning(tmp_path, monkeypatch):
    warnings = warnings_of(monkeypatch, workdir_lib)
    workdir = str(tmp_path)
    path = os.path.join(workdir, 'metrics.jsonl')
    writer = workdir_lib.MetricWriter(workdir)
    for step in (2, 4, 6):
        writer.write(step, {'loss': float(step)})
    writer.close()
    with open(path, 'a') as f:
        f.write('{"step": 8, "time": 17')  # killed mid-write
    workdir_lib.MetricWriter(workdir, start_step=4).close()
    assert [m['step'] for m in read_metrics(workdir)] == [2, 4]
    assert warnings == [f'{path}: dropped its torn last line (a crash while writing it).']
    with open(path, 'a') as f:
        f.write('{"step": 5, "ti\n{"step": 6, "time": 1.0}\n')  # damage before the last line
    with pytest.raises(ValueError, match=f'{path}, line 3, is not JSON'):
        workdir_lib.MetricWriter(workdir, start_step=6)


# The kill-and-resume test's run: the VAE, saving every 2 steps.
def _cli_overrides(num_steps: int) -> dict:
    return {**VAE, 'train.num_steps': num_steps, 'train.checkpoint_every': 2}


def _cli_vae(data_dir: str, workdir: str, num_steps: int) -> list[str]:
    """train.py running configs/vae_mnist.py:smoke with _cli_overrides as --config flags."""
    flags = [f'--config.{k}={v}' for k, v in {**_cli_overrides(num_steps),
                                             'data.data_dir': data_dir}.items()]
    return [sys.executable, 'train.py', '--config', 'configs/vae_mnist.py:smoke',
            '--workdir', workdir, *flags]


def _wait_for(predicate, timeout: float = 240.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, 'the run made no progress'
        time.sleep(0.002)


def logged_steps(workdir: str) -> list[int]:
    """Steps of the complete lines of a running job's metrics.jsonl (none before it exists)."""
    try:
        with open(os.path.join(workdir, 'metrics.jsonl')) as f:
            return [json.loads(line)['step'] for line in f if line.endswith('\n')]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def test_sigterm_then_sigkill_at_random_points_then_resume_equals_uninterrupted(
        tmp_path, data_dir):
    """The CLI under a scheduler: SIGTERM saves and exits 75 with one line; then 2 SIGKILLs, one
    as soon as a checkpoint is being written and one at a random moment; every rerun resumes, and
    the last one ends with the parameters of an uninterrupted run, bit for bit. (Each launch pays
    for start-up and compiles: with 4 SIGKILLs this was the suite's second-slowest test, 75 s.)"""
    num_steps, rng = 60, np.random.default_rng(0)
    workdir = str(tmp_path / 'killed')
    ckpts = os.path.join(workdir, 'checkpoints')

    def start():
        return subprocess.Popen(_cli_vae(data_dir, workdir, num_steps), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, 'XLA_FLAGS': XLA_FLAGS})

    run = start()
    _wait_for(lambda: len(logged_steps(workdir)) >= 2)
    run.send_signal(signal.SIGTERM)
    stderr = run.communicate(timeout=240)[1]
    assert run.returncode == checkpoint.EXIT_CODE, stderr
    last = stderr.strip().splitlines()[-1]
    assert re.fullmatch(r'stopped: SIGTERM received: saved a checkpoint of step (\d+) in .*; '
                        r'rerun the same command to resume from it\.', last), last
    assert 'Traceback' not in stderr

    def temporary() -> set[str]:
        """Orbax's temporary directories: a save being written, or one a SIGKILL cut short
        (they stay until a save of the same step replaces them)."""
        return {n for n in os.listdir(ckpts) if 'tmp' in n} if os.path.isdir(ckpts) else set()

    kills, mid_save = 0, 0
    while kills < 2 or (not mid_save and kills < 4):  # a save can finish before the kill lands
        seen, left = max(logged_steps(workdir), default=0), temporary()
        run = start()
        if kills % 2:  # a random moment after the run got going
            _wait_for(lambda: max(logged_steps(workdir), default=0) > seen
                      or run.poll() is not None)
            time.sleep(rng.uniform(0, 0.2))
        else:  # as soon as this run writes a checkpoint (a new temporary directory)
            _wait_for(lambda: run.poll() is not None or temporary() - left)
        if run.poll() is not None:
            break
        run.kill()
        run.wait()
        kills += 1
        mid_save += bool(temporary() - left)  # the kill cut a save short
    assert kills >= 2 and mid_save >= 1, (kills, mid_save)
    final = subprocess.run(_cli_vae(data_dir, workdir, num_steps), cwd=ROOT,
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, 'XLA_FLAGS': XLA_FLAGS})
    assert final.returncode == 0, final.stderr[-2000:]
    straight = str(tmp_path / 'straight')
    trainer.train_and_evaluate(
        smoke_config('vae_mnist', data_dir, _cli_overrides(num_steps)), straight)
    assert_same_params(straight, workdir, num_steps)


# The multi-device tests train these families in each launched process: (config, overrides of
# its smoke config, logged metrics compared). The VAE takes each batch of 16 as 2 micro-batches of
# 8 (train.grad_accum_steps), its layers computing in bfloat16. The DCGAN (batch norm over the
# global batch) and DDPM run with their parameters sharded; the VAE, flow matching and EDM run
# replicated. (Replicated DCGAN and DDPM runs beside these cost 75 s of the suite's CPU and added
# no code path: the batch-norm statistics and the steps are the same in either layout.)
MULTI_DEVICE_RUNS = {
    'vae_accum_bf16': ('vae_mnist', {**VAE, 'train.grad_accum_steps': 2,
                                     'train.compute_dtype': 'bfloat16'}, ('loss',)),
    'gan_fsdp': ('dcgan_mnist', {**DCGAN, 'train.param_sharding': 'fsdp'}, ('d_loss', 'g_loss')),
    'ddpm_fsdp': ('ddpm_grid25', {**DDPM_TOY, 'train.param_sharding': 'fsdp'},
                  ('loss', 'loss_q0')),
    'flow_matching_ot': ('fm_toy2d', FM_OT_TOY, ('loss', 'loss_q0')),
    'edm': ('edm_grid25', {**EDM_TOY, 'eval.ode_likelihood_solver': ''}, ('loss', 'loss_q0'))}
# The one run that also evaluates: of parameters sharded over both processes, which every process
# gathers (parallel.to_host). The others only train: their evaluations read gathered parameters on
# each host alike, and cost 30 s of CPU here without a multi-device code path.
MULTI_DEVICE_EVALUATED = 'gan_fsdp'


def _multi_device_script(data_dir: str) -> str:
    """Python that trains every MULTI_DEVICE_RUNS family for 8 steps into <argv[1]>/<name>, joining
    jax.distributed first as train.py does (a no-op without the JAX_* variables)."""
    return textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {ROOT!r})
        from genmodels import cli, families, trainer
        from genmodels.training import checkpoint, parallel
        from genmodels.training import workdir as workdir_lib
        from tests.helpers import smoke_config
        parallel.maybe_initialize_distributed()
        import jax
        cli.use_compile_cache(os.path.join(sys.argv[1], 'xla_cache'))  # shared, as on a cluster
        runs = {MULTI_DEVICE_RUNS!r}
        for name, (config_name, overrides, _) in runs.items():
            config = smoke_config(config_name, {data_dir!r}, overrides, {{'train.num_steps': 8}})
            workdir = os.path.join(sys.argv[1], name)
            if name == {MULTI_DEVICE_EVALUATED!r}:
                trainer.train_and_evaluate(config, workdir)
            else:  # training only: what is compared
                with checkpoint.StopRequests() as stops, workdir_lib.Lock(workdir) as lock:
                    trainer.train(config, workdir, families.validated(config), lock, stops)
        # Where the fsdp run's parameters live: a [32, 32] kernel's shards on this process.
        from genmodels import data
        from genmodels.training import train_state
        mesh = parallel.make_mesh()
        config = smoke_config('ddpm_grid25', {data_dir!r}, runs['ddpm_fsdp'][1])
        hits = []  # the persistent compile cache, hit by a second compile of the init program
        jax.monitoring.register_event_listener(
            lambda event, **kw: hits.append(event) if event.endswith('cache_hits') else None)
        jax.clear_caches()
        state = train_state.init_state(config, families.get('ddpm'), mesh,
                                       train_state.example_batch(data.dataset_info(config.data)))
        kernel = state['params']['dense_1']['kernel']
        shards = [(s.device.id, s.data.shape) for s in kernel.addressable_shards]
        # The compiled GAN step's temporary memory at a global batch of 64, by layout (on one
        # device the two layouts are one program).
        temp = {{}}
        for layout in ('replicated', 'fsdp') if jax.device_count() > 1 else ():
            config = smoke_config('dcgan_mnist', {data_dir!r}, runs['gan_fsdp'][1],
                                  {{'train.param_sharding': layout, 'train.batch_size': 64}})
            family = families.get('gan')
            example = train_state.example_batch(data.dataset_info(config.data))
            state = train_state.abstract_state(config, family, mesh, example)
            batch = {{k: jax.ShapeDtypeStruct((64,) + v.shape[1:], v.dtype,
                                              sharding=parallel.data_sharding(mesh))
                      for k, v in example.items()}}
            compiled = train_state.make_train_step(config, family, mesh, state).lower(
                state, batch).compile()
            temp[layout] = compiled.memory_analysis().temp_size_in_bytes
        print(json.dumps({{'devices': jax.device_count(), 'processes': jax.process_count(),
                          'kernel_shape': kernel.shape, 'kernel_shards': shards,
                          'cache_hits': len(hits), 'gan_temp': temp}}))
    """)


def _curves(workdir: str) -> dict[str, list[float]]:
    return {f'{name}/{key}': [m[key] for m in read_metrics(os.path.join(workdir, name)) if key in m]
            for name, (_, _, keys) in MULTI_DEVICE_RUNS.items() for key in keys}


def _run_multi_device_script(data_dir: str, workdir: str, num_processes: int,
                             devices_per_process: int) -> None:
    """Runs _multi_device_script in `num_processes` local processes of `devices_per_process` CPU
    devices each, joined by jax.distributed (gloo collectives) when there are several."""
    import portpicker

    port = portpicker.pick_unused_port()
    procs = []
    for pid in range(num_processes):
        env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=f'{XLA_FLAGS} '
                   f'--xla_force_host_platform_device_count={devices_per_process}')
        if num_processes > 1:
            env |= {'JAX_COORDINATOR_ADDRESS': f'localhost:{port}',
                    'JAX_NUM_PROCESSES': str(num_processes), 'JAX_PROCESS_ID': str(pid)}
        procs.append(subprocess.Popen(
            [sys.executable, '-c', _multi_device_script(data_dir), workdir],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        info = json.loads(out.strip().splitlines()[-1])
        assert (info['processes'], info['devices']) == (num_processes,
                                                        num_processes * devices_per_process)
        # fsdp: the kernel split along its last axis, one slice on each local device.
        num_devices = num_processes * devices_per_process
        assert info['kernel_shape'] == [32, 32]
        assert sorted(shape for _, shape in info['kernel_shards']) == (
            [[32, 32 // num_devices]] * devices_per_process)
        assert len({device for device, _ in info['kernel_shards']}) == devices_per_process
        # fsdp computes each layer on this device's rows, as replicated does, gathering the
        # weights: without the layers pinned to the batch layout (parallel.batch_split_layers),
        # the partitioner gathers the batch instead and G runs on the whole global batch on every
        # device (1.46x the replicated step's temporary memory at 8 devices, measured 2026-12-08).
        temp = info['gan_temp']
        if num_devices > 1:
            assert temp['fsdp'] <= 1.25 * temp['replicated'], temp
        if num_processes == 1:  # the compile cache (genmodels/cli.py) served a program; with
            # several processes JAX compiles through its distributed service and counted no hit
            assert info['cache_hits'] >= 1, info


def test_eight_devices_and_two_processes_give_the_same_loss_curves_as_one(tmp_path, data_dir):
    """Every MULTI_DEVICE_RUNS family trained on one device is the reference. On 8 devices in two
    local processes of four CPU devices each, joined by jax.distributed (gloo collectives), each
    reading its half of every global batch, the loss curves and the final parameters agree; the
    fsdp run's checkpoint saved there resumes on 1 and on 2 devices to the same end. (A
    launch of 8 devices in one process, checked here before, added 50 s and no code path: the
    mesh spans several local devices in each process either way.)"""
    paths = {n: str(tmp_path / n) for n in ('one', 'p2')}
    _run_multi_device_script(data_dir, paths['one'], 1, 1)
    _run_multi_device_script(data_dir, paths['p2'], 2, 4)
    curves = {name: _curves(path) for name, path in paths.items()}
    assert all(len(c) == 4 for c in curves['one'].values())
    for key in curves['one']:
        np.testing.assert_allclose(curves['p2'][key], curves['one'][key], rtol=2e-5, err_msg=key)
    for name in MULTI_DEVICE_RUNS:
        one, two = (restore_params(os.path.join(paths[w], name), 8) for w in ('one', 'p2'))
        # Equal up to float reassociation (the reductions run over other device groupings),
        # which Adam turns into steps of up to ~1e-5 on weights whose gradient is ~0: it divides
        # each gradient element by its own running scale. In bfloat16 the reassociated sums
        # differ in the third digit, and such a weight may take 8 steps of up to the learning
        # rate (1e-3) in another direction: measured up to 7e-3 on 800 of the VAE's weights,
        # while the loss curves above still agree to 2e-5.
        atol = 1.6e-2 if 'bf16' in name else 5e-5
        for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(two), strict=True):
            np.testing.assert_allclose(y, x, rtol=1e-3, atol=atol, err_msg=name)

    # The fsdp run's checkpoint of step 4, saved over 8 devices in two processes, resumed on one
    # device (here) and on two (a launch that also checks a batch size the devices do not
    # divide), ends where the one-device run ends.
    config_name, overrides, _ = MULTI_DEVICE_RUNS['ddpm_fsdp']
    resumed = {n: str(tmp_path / f'resumed_{n}') for n in (1, 2)}
    for path in resumed.values():
        shutil.copytree(os.path.join(paths['p2'], 'ddpm_fsdp'), path)
        shutil.rmtree(os.path.join(path, 'checkpoints', '8'))
    trainer.train_and_evaluate(smoke_config(config_name, data_dir, overrides,
                                            {'train.num_steps': 8}), resumed[1])
    refused = str(tmp_path / 'refused')
    error = _two_device_resume_and_batch_check(data_dir, resumed[2], refused)
    assert error == ('train.batch_size=13 does not divide evenly over 2 devices; use a multiple '
                     'of 2.'), error
    assert not os.path.exists(refused)
    for n, path in resumed.items():
        np.testing.assert_allclose([m['loss'] for m in read_metrics(path)],
                                   curves['one']['ddpm_fsdp/loss'], rtol=2e-5, err_msg=str(n))
        for x, y in zip(jax.tree.leaves(restore_params(os.path.join(paths['one'], 'ddpm_fsdp'),
                                                       8)),
                        jax.tree.leaves(restore_params(path, 8)), strict=True):
            np.testing.assert_allclose(y, x, rtol=1e-3, atol=5e-5, err_msg=str(n))


def _two_device_resume_and_batch_check(data_dir: str, resumed: str, refused: str) -> str:
    """In one process of 2 CPU devices: a VAE run of batch 13 must stop with a one-line error
    and leave no workdir at `refused` (returned: the error's text), then the ddpm_fsdp run in
    `resumed` trains on from its checkpoint to step 8."""
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {ROOT!r})
        from genmodels import trainer
        from tests.helpers import VAE, smoke_config
        config = smoke_config('vae_mnist', {data_dir!r}, VAE)
        config.train.batch_size = 13
        try:
            trainer.train_and_evaluate(config, sys.argv[2])
            error = ''
        except Exception as e:
            error = str(e)
        config_name, overrides, _ = {MULTI_DEVICE_RUNS['ddpm_fsdp']!r}
        trainer.train_and_evaluate(smoke_config(config_name, {data_dir!r}, overrides,
                                                {{'train.num_steps': 8}}), sys.argv[1])
        print(json.dumps({{'error': error}}))
    """)
    env = dict(os.environ, XLA_FLAGS=f'{XLA_FLAGS} --xla_force_host_platform_device_count=2',
               JAX_PLATFORMS='cpu')
    out = subprocess.run([sys.executable, '-c', script, resumed, refused], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])['error']


def replace(config, section, **values):
    """Swaps a whole section, as a hand-written config might; field assignment is type-checked."""
    config[section] = ml_collections.ConfigDict({**config[section].to_dict(), **values})


@pytest.mark.parametrize('mutate,message', [
    (lambda c: c.train.__setattr__('batch_sise', 3), 'unknown config key train.batch_sise'),
    (lambda c: replace(c, 'train', num_steps='10'), 'train.num_steps must be int'),
    (lambda c: replace(c, 'optimizer', learning_rate=True), 'optimizer.learning_rate must be float'),
    (lambda c: c.__setattr__('objective', 'elbow'), "unknown objective 'elbow' for family 'vae'"),
    (lambda c: c.__setattr__('family', 'vea'), "unknown family 'vea'"),
    (lambda c: c.data.__setattr__('name', 'mnsit'), "unknown dataset 'mnsit'"),
    (lambda c: c.data.__setattr__('binarize', False), 'Bernoulli likelihood needs binary data'),
    (lambda c: c.train.__setattr__('ema_rate', 1.5), 'train.ema_rate must be in [0, 1)'),
    (lambda c: c.train.__setattr__('batch_size', 8192), 'train.batch_size=8192 exceeds the 4500 '
                                                       'examples of mnist_bundled:train'),
])
def test_bad_config_fails_before_touching_the_workdir(tmp_path, data_dir, mutate, message):
    config = smoke_config('vae_mnist', data_dir, VAE)
    mutate(config)
    workdir = str(tmp_path / 'w')
    with pytest.raises(ValueError) as e:
        trainer.train_and_evaluate(config, workdir)
    assert message.lower() in str(e.value).lower()
    assert '\n' not in str(e.value)
    assert not os.path.exists(workdir)


@pytest.mark.parametrize('where', ['file', 'under_a_file'])
def test_workdir_that_cannot_be_a_directory_is_a_one_line_error(tmp_path, data_dir, where):
    path = tmp_path / 'f'
    path.write_text('not a directory')
    workdir = str(path) if where == 'file' else str(path / 'w')
    with pytest.raises(workdir_lib.WorkdirError, match='is a file|which is a file') as e:
        trainer.train_and_evaluate(smoke_config('vae_mnist', data_dir, VAE), workdir)
    assert '\n' not in str(e.value) and path.read_text() == 'not a directory'


def test_workdir_saved_before_a_key_was_added_resumes(tmp_path, data_dir):
    """config.json written before train.grad_accum_steps existed: resumed with its default."""
    config = smoke_config('vae_mnist', data_dir, VAE, {'train.num_steps': 4})
    workdir = str(tmp_path / 'w')
    trainer.train_and_evaluate(config, workdir)
    path = os.path.join(workdir, 'config.json')
    saved = json.load(open(path))
    del saved['train']['grad_accum_steps']
    with open(path, 'w') as f:
        json.dump(saved, f)
    config.train.num_steps = 8
    assert trainer.train_and_evaluate(config, workdir)['step'] == 8


def test_init_from_starts_from_another_runs_weights_with_a_fresh_optimizer(tmp_path, data_dir,
                                                                            straight):
    """train.init_from: the run starts from the source's weights with its own optimizer and step.
    The smoke VAE's learning rate warms up from 0, so a fresh optimizer's first update is exactly
    zero: after one step the weights are still the source's, bit for bit (carrying the source's
    optimizer, at step 12, would have moved them). A source that is no run, or a run of another
    model, is a one-line error that leaves no workdir."""
    config = smoke_config('vae_mnist', data_dir, VAE, {'train.init_from': straight,
                                                       'train.num_steps': 1})
    workdir = str(tmp_path / 'w')
    trainer.train_and_evaluate(config, workdir)
    state, source = restore_params(workdir, 1), restore_params(straight, 12)
    assert int(state['step']) == 1
    for a, b in zip(jax.tree.leaves(state['params']), jax.tree.leaves(source['params'])):
        np.testing.assert_array_equal(a, b)
    # A single-seed source starts every seed lane of a run of several.
    lanes = smoke_config('vae_mnist', data_dir, VAE, {'train.init_from': straight,
                                                      'train.num_steps': 1, 'train.num_seeds': 2})
    trainer.train_and_evaluate(lanes, str(tmp_path / 'lanes'))
    state = restore_params(str(tmp_path / 'lanes'), 1)
    for a, b in zip(jax.tree.leaves(state['params']), jax.tree.leaves(source['params'])):
        assert a.shape == (2,) + b.shape
        np.testing.assert_array_equal(a[0], b)
        np.testing.assert_array_equal(a[1], b)
    for source_dir, mutate, message in [
            (str(tmp_path / 'none'), {}, 'holds no run'),
            (straight, {'model.latent_dim': 6}, 'give a run of the same model')]:
        config = smoke_config('vae_mnist', data_dir, VAE, mutate,
                              {'train.init_from': source_dir})
        bad = str(tmp_path / 'bad')
        with pytest.raises(config_lib.ConfigError, match=message) as e:
            trainer.train_and_evaluate(config, bad)
        assert '\n' not in str(e.value) and not os.path.exists(bad)


def test_corrupt_config_json_is_a_one_line_error_and_is_kept(tmp_path, data_dir):
    workdir = tmp_path / 'w'
    workdir.mkdir()
    (workdir / 'config.json').write_text('{"family": "va')
    with pytest.raises(workdir_lib.WorkdirError, match='config.json is not readable JSON') as e:
        trainer.train_and_evaluate(smoke_config('vae_mnist', data_dir, VAE), str(workdir))
    assert '\n' not in str(e.value)
    assert os.listdir(workdir) == ['config.json']
    assert (workdir / 'config.json').read_text() == '{"family": "va'


def test_unknown_dataset_lists_known_names(tmp_path):
    config = smoke_config('vae_mnist', None, VAE)
    config.data.name = 'imagenet_sketchy'
    with pytest.raises(ValueError, match='mnist_bundled'):
        trainer.train_and_evaluate(config, str(tmp_path / 'w'))


def test_train_py_reports_bad_override_in_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, 'train.py', '--config', 'configs/vae_mnist.py:smoke', '--workdir',
         str(tmp_path / 'w'), '--config.train.num_stepz=3'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and 'Traceback' not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        'error: unknown config key in an override: num_stepz; did you mean num_steps?')
    assert not os.path.exists(tmp_path / 'w')


def poison_at(step: int, value: float):
    """Iterator hook: the batch of `step` (1-based) has every pixel set to `value`."""
    def hook(batches):
        for i, batch in enumerate(batches):
            if i == step - 1:
                batch = dict(batch, image=np.full_like(batch['image'], value))
            yield batch
    return hook


def test_nan_loss_stops_with_step_range_and_keeps_good_checkpoints(tmp_path, data_dir):
    config = smoke_config('vae_mnist', data_dir, VAE)
    workdir = str(tmp_path / 'nan')
    with pytest.raises(workdir_lib.NonFiniteLossError,
                       match='between steps 6 and 7; last good checkpoint: step 4'):
        trainer.train_and_evaluate(config, workdir, iterator_hook=poison_at(7, np.nan))
    assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['4']
    assert checkpoint.all_finite(restore_params(workdir, 4))


def test_a_non_finite_state_is_never_saved(tmp_path):
    """all_finite reads every floating array (bfloat16 too) and skips integer ones; save refuses a
    state with one bad value and leaves no checkpoint behind."""
    good = {'step': jnp.int32(3), 'w': jnp.ones((2, 3)), 'h': jnp.ones(4, jnp.bfloat16)}
    assert checkpoint.all_finite(good) and checkpoint.all_finite({'step': jnp.int32(1)})
    for leaf, bad in [('w', jnp.ones((2, 3)).at[1, 2].set(jnp.nan)),
                      ('h', jnp.ones(4, jnp.bfloat16).at[0].set(-jnp.inf))]:
        state = dict(good, **{leaf: bad})
        assert not checkpoint.all_finite(state)
        mngr = checkpoint.manager(str(tmp_path / leaf))
        with pytest.raises(checkpoint.CheckpointError, match='non-finite state at step 3'):
            checkpoint.save(mngr, 3, state)
        mngr.wait_until_finished()
        assert mngr.all_steps() == []
    mngr = checkpoint.manager(str(tmp_path / 'good'))
    checkpoint.save(mngr, 3, good)
    mngr.wait_until_finished()
    assert mngr.all_steps() == [3]


def test_resume_with_a_different_config_is_refused(tmp_path, data_dir):
    config = smoke_config('vae_mnist', data_dir, VAE, {'train.num_steps': 4})
    workdir = str(tmp_path / 'w')
    trainer.train_and_evaluate(config, workdir)
    config.model.latent_dim = 5
    with pytest.raises(workdir_lib.WorkdirError, match='model.latent_dim'):
        trainer.train_and_evaluate(config, workdir)
    # Extending the run is allowed and resumes from step 4.
    config.model.latent_dim = 4
    config.train.num_steps = 8
    assert trainer.train_and_evaluate(config, workdir)['step'] == 8


def overwrite_in_place(workdir: str, step: int) -> None:
    """Overwrites the start of every array-data file of checkpoint `step` (sizes unchanged)."""
    files = [f for f in glob.glob(f'{workdir}/checkpoints/{step}/**/*', recursive=True)
             if os.path.isfile(f) and os.path.getsize(f) > 100 and 'metadata' not in f.lower()]
    assert files
    for f in files:
        with open(f, 'r+b') as fh:
            fh.write(b'\0garbage' * 16)


def assert_same_params(workdir_a: str, workdir_b: str, step: int) -> None:
    a, b = restore_params(workdir_a, step), restore_params(workdir_b, step)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_corrupt_latest_checkpoint_is_moved_aside_and_the_previous_one_used(
        tmp_path, data_dir, monkeypatch, straight):
    config = smoke_config('vae_mnist', data_dir, VAE)
    workdir = str(tmp_path / 'w')
    with pytest.raises(Killed):  # dies computing step 9, after the checkpoint of step 8
        trainer.train_and_evaluate(config, workdir, iterator_hook=kill_after(8))
    overwrite_in_place(workdir, 8)
    seen = warnings_of(monkeypatch, checkpoint)
    trainer.train_and_evaluate(config, workdir)  # resumes from step 4
    assert os.path.isdir(f'{workdir}/checkpoints_unreadable/8')
    warnings = [w for w in seen if 'moved it to' in w]
    assert len(warnings) == 1 and 'checkpoint at step 8 cannot be restored' in warnings[0]
    assert 'resumed from step 4' in warnings[0]
    assert_same_params(straight, workdir, 12)


def test_no_good_checkpoint_is_a_clear_error_and_moves_nothing(tmp_path, data_dir):
    config = smoke_config('vae_mnist', data_dir, VAE, {'train.num_steps': 8})
    workdir = str(tmp_path / 'w')
    trainer.train_and_evaluate(config, workdir)
    for step in (4, 8):
        overwrite_in_place(workdir, step)
    config.train.num_steps = 12
    with pytest.raises(checkpoint.CheckpointError,
                       match='no checkpoint in .* can be restored .*step 8.* new --workdir'):
        trainer.train_and_evaluate(config, workdir)
    assert sorted(os.listdir(f'{workdir}/checkpoints')) == ['4', '8']
    assert not os.path.exists(f'{workdir}/checkpoints_unreadable')


def test_changed_bytes_that_still_decode_fail_the_checksum(tmp_path):
    """Orbax restores such a checkpoint without complaint; the recorded sha256 catches it."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    states = [{'w': jax.numpy.full((64,), v), 'step': jax.numpy.asarray(1)} for v in (1.0, 2.0)]
    for name, state in zip('ab', states):
        mngr = checkpoint.manager(str(tmp_path / name))
        checkpoint.save(mngr, 1, state)
        mngr.wait_until_finished()
    # a's metadata (with a's digests) over b's array bytes: a readable checkpoint of other values.
    shutil.rmtree(tmp_path / 'a/checkpoints/1/default')
    shutil.copytree(tmp_path / 'b/checkpoints/1/default', tmp_path / 'a/checkpoints/1/default')
    mngr = checkpoint.manager(str(tmp_path / 'a'), read_only=True)
    restored = mngr.restore(1, args=ocp.args.StandardRestore())
    assert float(restored['w'][0]) == 2.0  # Orbax alone does not notice
    with pytest.raises(checkpoint.CheckpointError, match=r'fail their sha256 \(first: w\)'):
        checkpoint.restore_as_saved(mngr, sharding)
