"""Time of eval.py on a trained workdir, and of its sample metrics alone.

    python benchmarks/bench_eval.py [--workdir workdirs/vae_default] [--num_samples 10000]

The workdir is copied to a temporary directory first (eval.py writes eval.json, figures and the
reference-statistics cache into it), so the original is left untouched. Prints three times:
  eval.py          the whole command, cold reference cache (startup, restore, test likelihood,
                   figures, sample metrics): what `make train` adds after training
  sample metrics   evaluate_samples alone, cold cache: generating and featurising the samples,
                   the real data's reference statistics, FID/KID/IS/precision/recall
  sample (cached)  the same with the reference statistics cached
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from genmodels import evaluation, families  # noqa: E402
from genmodels.metrics import sample_quality  # noqa: E402


def time_sample_metrics(workdir: str, num_samples: int, cache_dir: str) -> tuple[float, dict]:
    config, state, _ = evaluation.restore(workdir, {'eval.num_samples': num_samples})
    family = families.get(config.family)
    params = jax.device_get(families.eval_params(family, config, state))
    b = config.eval.batch_size
    sample_batch = jax.jit(lambda key: family.sample(config, params, key, b))
    start = time.perf_counter()
    result = sample_quality.evaluate_samples(config, sample_batch, jax.random.key(0),
                                             cache_dir=cache_dir)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workdir', default=os.path.join(ROOT, 'workdirs', 'vae_default'))
    parser.add_argument('--num_samples', type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, 'run')
        shutil.copytree(args.workdir, copy)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, 'eval.py', '--workdir', copy, '--num_samples',
                              str(args.num_samples)], cwd=ROOT, capture_output=True, text=True)
        total = time.perf_counter() - start
        if out.returncode:
            sys.exit(out.stderr[-3000:])
        print(out.stdout.strip())
        cold, _ = time_sample_metrics(copy, args.num_samples, os.path.join(tmp, 'cache'))
        warm, _ = time_sample_metrics(copy, args.num_samples, os.path.join(tmp, 'cache'))
    print(f'eval.py: {total:.1f} s   sample metrics: {cold:.1f} s   sample (cached): '
          f'{warm:.1f} s   ({args.num_samples} samples, {os.cpu_count()} CPUs)')


if __name__ == '__main__':
    main()
