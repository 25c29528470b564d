"""The benchmark table in one command: each deep config's train step (PyTorch eager beside it where
a reference mirrors it), its samplers and its real training loop; EM and KDE beside scikit-learn
and SciPy. On whatever devices JAX sees: CPU, GPU or TPU.

    python -m benchmarks.run --smoke --out /tmp/bench            # seconds: vae_mnist:smoke, em, kde
    python -m benchmarks.run --out bench/cpu_t2 --threads 2 --batch_sizes 32,128,512,2048
    python -m benchmarks.run --configs vae_mnist,dcgan_mnist,em --threads 1 --out bench/cpu_t1
    python -m benchmarks.run --compare bench/cpu_t1 bench/cpu_t2 --out bench/t1_vs_t2

--configs takes config names from configs/ (deep ones: every config whose family trains step by
step) and the classical rows `em` and `kde` (benchmarks/classical.py); the default is all of them
(with --smoke: vae_mnist, em, kde, and each deep config as its `:smoke` variant). Each deep config
runs at every --batch_sizes entry (default: its own train.batch_size; with --smoke, 8).

--out DIR gets results.json (one record per config, batch size and device set; keys in
benchmarks/deep.py and benchmarks/classical.py), results.md (the tables) and scaling.png. --compare
A B reads two results.json (or their --out directories) and prints every number the matching
records share with the ratio B/A, into DIR/compare.md with --out.

--threads N pins XLA:CPU, BLAS and torch to N threads (benchmarks/hardware.py) and records it; it
must act before JAX starts its CPU backend, so give it on the command line. Without it every side
uses all usable CPUs. PyTorch (benchmarks/requirements-torch.txt) is optional: without it the torch
columns are empty and the notes say how to install it.

A full sweep is long on a small machine: --max_step_seconds S skips a config's larger batch sizes
once its step, extrapolated linearly in the batch size from the largest one measured, would exceed
S seconds (results.md lists each skip and the prediction). --resume continues an --out directory:
the records it holds (same config, batch size, device kind, device count and thread count) are
kept and not measured again, so a sweep can be split over several sittings or restarted after an
interruption; each record carries the date and commit it was measured at.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib
import json
import os
import subprocess
import sys
from typing import Callable

from genmodels import xla_cpu

xla_cpu.configure()  # train.py's XLA:CPU settings, before JAX starts its CPU backend

import jax  # noqa: E402
from absl import logging  # noqa: E402

from benchmarks import classical, deep, hardware, report, torch_ref  # noqa: E402
from genmodels import families  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE_CONFIGS = ('vae_mnist',) + classical.ROWS
SMOKE_BATCH = 8
# Defaults of the timing settings: (full run, --smoke).
DEFAULTS = {'steps': (10, 3), 'rounds': (3, 1), 'warmup': (3, 1), 'loop_steps': (20, 2),
            'loop_seconds': (5, 1), 'loop_intervals': (3, 1), 'sample_repeats': (3, 1),
            'matmul_size': (2048, 512)}


def config_names() -> list[str]:
    return sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                  if not os.path.basename(p).startswith(('_', 'common')))


def load_config(name: str, smoke: bool):
    return importlib.import_module(f'configs.{name}').get_config('smoke' if smoke else None)


def deep_config_names() -> list[str]:
    return [n for n in config_names()
            if not families.is_fit(families.get(load_config(n, smoke=False).family))]


def parse_configs(spec: str | None, smoke: bool) -> list[str]:
    """--configs -> names (deep config names and classical rows); one-line errors."""
    if spec is None:
        return list(SMOKE_CONFIGS) if smoke else deep_config_names() + list(classical.ROWS)
    deep_names, known = deep_config_names(), config_names()
    names = []
    for raw in spec.split(','):
        name = raw.strip().removeprefix('configs/').removesuffix('.py')
        if name in classical.ROWS or name in deep_names:
            names.append(name)
        elif name in known:
            raise SystemExit(f'error: --configs {name}: a classical (fit) config; the classical '
                             f'rows are {", ".join(classical.ROWS)}.')
        else:
            raise SystemExit(f'error: --configs {raw!r} is not a config; choose from '
                             f'{", ".join(deep_names + list(classical.ROWS))}.')
    return names


def parse_batch_sizes(spec: str | None) -> list[int] | None:
    if spec is None:
        return None
    try:
        sizes = [int(s) for s in spec.split(',')]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise SystemExit(f'error: --batch_sizes {spec!r}: give positive integers separated by '
                         f'commas, e.g. 32,128,512,2048.')
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.run', formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__)
    parser.add_argument('--configs', help='comma-separated config names and classical rows '
                        '(em, kde); default: all (with --smoke: vae_mnist,em,kde)')
    parser.add_argument('--batch_sizes', help='comma-separated global batch sizes, e.g. '
                        '32,128,512,2048; default: each config\'s own (--smoke: 8)')
    parser.add_argument('--smoke', action='store_true',
                        help=':smoke configs, tiny batches and sizes, few steps: seconds')
    parser.add_argument('--threads', type=int, help='pin XLA:CPU, BLAS and torch to N threads')
    parser.add_argument('--out', help='directory for results.json, results.md, scaling.png '
                        '(with --compare: compare.md)')
    parser.add_argument('--compare', nargs=2, metavar=('A', 'B'),
                        help='two results.json (or --out directories) to put side by side')
    parser.add_argument('--no_torch', action='store_true', help='skip the PyTorch references')
    parser.add_argument('--profile', action='store_true', help='trace one step of each deep '
                        'record: where its time goes, by HLO op')
    parser.add_argument('--data_dir', help='TFDS data dir of every deep config (default: each '
                        'config\'s data.data_dir)')
    parser.add_argument('--max_step_seconds', type=float,
                        help='skip a larger batch size whose step, extrapolated linearly from '
                        'the largest measured one, would take longer than this')
    parser.add_argument('--samplers', help='comma-separated sampler names timed instead of '
                        'each config\'s eval.samplers (families that have samplers by name: '
                        'DDPM ddim10,dpmpp2m10,heun10; flow matching euler10,dopri5)')
    parser.add_argument('--resume', action='store_true', help='keep the records already in '
                        '--out DIR/results.json and measure only the missing ones')
    for name, (full, smoke) in DEFAULTS.items():
        parser.add_argument(f'--{name}', type=int, help=f'default {full} (--smoke: {smoke})')
    args = parser.parse_args(argv)
    if args.resume and not args.out:
        raise SystemExit('error: --resume continues an --out directory: give --out DIR.')
    if args.max_step_seconds is not None and not args.max_step_seconds > 0:
        raise SystemExit(f'error: --max_step_seconds must be positive, got '
                         f'{args.max_step_seconds}.')
    for name in DEFAULTS:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name} must be at least 1, got {value}')
    return args


def environment(args, threads: int) -> dict:
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    torch_version = None
    if torch_ref.available():
        import torch  # a benchmark-only dependency: imported only where it may be absent
        torch_version = torch.__version__
    return {'device_kind': hardware.device_kind(), 'platform': hardware.platform(),
            'num_devices': jax.device_count(), 'threads': threads,
            'threads_pinned': args.threads is not None, 'cpus': os.cpu_count(),
            'jax': jax.__version__, 'torch': torch_version, 'commit': commit,
            'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'xla_flags': os.environ.get('XLA_FLAGS', ''), 'smoke': args.smoke,
            'other_load_cores': hardware.busy_cores(0.5)}


def run(args, on_record: Callable[[dict], None] = lambda results: None) -> dict:
    """The results of every (config, batch size); `on_record` gets the results so far after
    each record or skip ('complete' False until the last), so a long sweep that is stopped keeps
    what it measured."""
    threads = hardware.usable_cpus() if args.threads is None else args.threads
    if args.threads is not None:  # first: before anything starts JAX's CPU backend
        try:
            hardware.pin_threads(threads)
        except ValueError as e:
            raise SystemExit(f'error: {e}') from None
    if torch_ref.available() and not args.no_torch:
        hardware.set_torch_threads(threads)  # the same count as XLA's pool
    names = parse_configs(args.configs, args.smoke)
    batch_sizes = parse_batch_sizes(args.batch_sizes)
    timing = {name: getattr(args, name) or DEFAULTS[name][args.smoke] for name in DEFAULTS}
    settings = deep.Settings(**timing, torch=not args.no_torch, profile=args.profile)
    env = environment(args, threads)
    identity = {'device_kind': env['device_kind'], 'num_devices': env['num_devices'],
                'threads': threads}
    stamp = {'date': env['date'], 'commit': env['commit']}
    results = {'environment': env, 'records': [], 'skipped': [], 'complete': False}
    if args.resume:
        results = resumed(results, args.out)
    records, skipped = results['records'], results['skipped']
    # resumed() refused another machine's or thread count's run: every record here is this one's.
    done = {(r['config'], r['batch_size']) for r in records}
    for name in names:
        if name in classical.ROWS:
            if (name, None) in done:
                continue
            record = {'config': name, 'family': classical.FAMILY[name], 'batch_size': None,
                      **identity, **classical.measure(name, args.smoke, settings.matmul_size),
                      **stamp}
            records.append(record)
            print(f'{name}: done', file=sys.stderr, flush=True)
            on_record(results)
            continue
        config = load_config(name, args.smoke)
        if args.data_dir:
            config.data.data_dir = args.data_dir
        if args.samplers:
            if not hasattr(families.get(config.family), 'with_sampler'):
                raise SystemExit(f'error: --samplers: the {config.family} family of {name} has '
                                 'no samplers by name; leave it out of --configs.')
            config.eval.samplers = tuple(args.samplers.split(','))
            try:  # the family's own check of eval.samplers
                families.validated(config)
            except ValueError as e:  # ConfigError is one
                raise SystemExit(f'error: --samplers for {name}: {e}') from None
        mine = [r for r in records if r['config'] == name]
        measured_steps = {r['batch_size']: r['step_ms_median'] / 1e3 for r in mine}
        sampled = next(((r['sample_rates_batch_size'], r['sample_images_per_second'])
                        for r in mine if 'sample_rates_batch_size' in r), None)
        for b in batch_sizes or [SMOKE_BATCH if args.smoke else config.train.batch_size]:
            if (name, b) in done:
                continue
            skipped[:] = [s for s in skipped if (s['config'], s['batch_size']) != (name, b)]
            why = too_slow(measured_steps, b, args.max_step_seconds)
            try:
                if why:
                    raise deep.Skipped(why)
                measured = deep.measure(config, b, settings, sampled)
            except deep.Skipped as e:
                skipped.append({'config': name, 'batch_size': b, 'reason': str(e)})
                print(f'{name} batch {b}: skipped, {e}', file=sys.stderr, flush=True)
                on_record(results)
                continue
            measured_steps[b] = measured['step_ms_median'] / 1e3
            sampled = measured['sample_rates_batch_size'], measured['sample_images_per_second']
            architecture = config.model.architecture if 'architecture' in config.model else None
            records.append({'config': name, 'family': config.family, 'batch_size': b,
                            'architecture': architecture, **measured, **identity, **stamp})
            print(f'{name} batch {b}: {measured["step_ms_median"]:.3g} ms/step', file=sys.stderr,
                  flush=True)
            on_record(results)
    results['complete'] = True
    return results


def too_slow(measured: dict[int, float], batch_size: int, limit: float | None) -> str | None:
    """Why `batch_size` is skipped under --max_step_seconds `limit`, or None: its step predicted
    linearly in the batch size from the largest measured batch size below it (seconds by batch
    size in `measured`) exceeds the limit."""
    below = [b for b in measured if b < batch_size]
    if limit is None or not below:
        return None
    base = max(below)
    predicted = measured[base] * batch_size / base
    if predicted <= limit:
        return None
    return (f'its step would take about {predicted:.3g} s (linear from {measured[base]:.3g} s at '
            f'batch {base}), over --max_step_seconds {limit:g}')


def resumed(fresh: dict, out_dir: str) -> dict:
    """The results in out_dir/results.json, to continue; `fresh` (this run's empty results) when
    there are none. This run's environment goes to its 'resumed' list."""
    try:
        results = report.load(out_dir)
    except FileNotFoundError:
        return fresh
    except (ValueError, json.JSONDecodeError) as e:
        raise SystemExit(f'error: --resume: {e} Remove it or choose another --out.') from None
    then, now = results['environment'], fresh['environment']
    mine = {k: now[k] for k in ('device_kind', 'num_devices', 'threads', 'smoke')}
    theirs = {k: then.get(k) for k in mine}
    if theirs != mine:
        raise SystemExit(f'error: --resume: {out_dir} holds a run with {theirs}, this one has '
                         f'{mine}; choose another --out, or the same --threads.')
    results.setdefault('skipped', [])
    results['resumed'] = results.get('resumed', []) + [fresh['environment']]
    results['complete'] = False
    return results


def main(argv: list[str] | None = None) -> dict:
    """Runs (or compares) as the flags say; returns the results (or {'compare': markdown})."""
    args = parse_args(argv)
    if args.compare:
        try:
            a, b = (report.load(p) for p in args.compare)
            text = report.compare(a, b, tuple(args.compare))
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f'error: {e}') from None
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, 'compare.md'), 'w') as f:
                f.write(text)
        print(text)
        return {'compare': text}
    results = run(args, (lambda r: report.write(r, args.out)) if args.out else lambda r: None)
    print(report.markdown(results))
    if args.out:
        for path in report.write(results, args.out):
            print(f'wrote {path}', file=sys.stderr)
    return results


if __name__ == '__main__':
    logging.set_verbosity(logging.WARNING)  # Orbax and TFDS log every file at INFO.
    main()
