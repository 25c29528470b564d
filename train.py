"""Trains any config:  python train.py --config configs/X.py[:arg] --workdir W [--config.key=value]."""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from genmodels import cli, trainer, xla_cpu
from genmodels.training import checkpoint, parallel

xla_cpu.configure()  # before the first JAX computation

USAGE = 'python train.py --config configs/X.py[:arg] --workdir W [--config.key=value]'
FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Path to a config file in configs/.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and figures; resumes if it '
                    'holds a run.')
flags.mark_flags_as_required(['config', 'workdir'])
cli.define_compile_cache_flag()


def main(argv):
    cli.no_positional_arguments(argv, USAGE)
    if not FLAGS['verbosity'].present:
        logging.set_verbosity(logging.WARNING)  # Orbax and TFDS log every file at INFO.
    parallel.maybe_initialize_distributed()
    cli.use_compile_cache(FLAGS.compile_cache)
    try:
        config = FLAGS.config
        config.keys()  # The flag loads lazily; a missing file surfaces here.
    except OSError:
        sys.exit(f'error: cannot load config file {FLAGS["config"].config_filename!r}; give a '
                 f'path such as configs/vae_mnist.py.')
    try:
        metrics = trainer.train_and_evaluate(config, FLAGS.workdir)
    except checkpoint.Preempted as e:
        print(f'stopped: {e}', file=sys.stderr)
        sys.exit(checkpoint.EXIT_CODE)
    except (ValueError, OSError, FloatingPointError, RuntimeError) as e:
        sys.exit(f'error: {e}')
    print(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in metrics.items()))


if __name__ == '__main__':
    app.run(main, flags_parser=cli.parse_flags)
