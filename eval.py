"""Evaluates a trained workdir:  python eval.py --workdir W  ->  W/eval.json and W/figures/."""

import sys

from absl import app, flags, logging

from genmodels import evaluation, parallel

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'A workdir written by train.py.')
flags.DEFINE_integer('max_examples', None, 'Evaluate on the first N test examples only.')
flags.DEFINE_integer('iwae_k', None, 'Importance samples for the likelihood bound (default: the '
                     "config's eval.iwae_k).")
flags.mark_flag_as_required('workdir')


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    if not FLAGS['verbosity'].present:
        logging.set_verbosity(logging.WARNING)  # Orbax and TFDS log every file at INFO.
    parallel.maybe_initialize_distributed()
    overrides = {'eval.iwae_k': FLAGS.iwae_k} if FLAGS.iwae_k else {}
    try:
        metrics = evaluation.evaluate(FLAGS.workdir, FLAGS.max_examples, overrides)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        sys.exit(f'error: {e}')
    print(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in metrics.items()))


if __name__ == '__main__':
    app.run(main)
