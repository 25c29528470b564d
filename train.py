"""Trains any config:  python train.py --config configs/X.py[:arg] --workdir W [--config.key=value]."""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from genmodels import parallel, trainer

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Path to a config file in configs/.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and figures; resumes if it '
                    'holds a run.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    if not FLAGS['verbosity'].present:
        logging.set_verbosity(logging.WARNING)  # Orbax and TFDS log every file at INFO.
    parallel.maybe_initialize_distributed()
    try:
        metrics = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (ValueError, FileNotFoundError, FloatingPointError, RuntimeError) as e:
        sys.exit(f'error: {e}')
    print(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in metrics.items()))


if __name__ == '__main__':
    app.run(main)
