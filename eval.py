"""Evaluates a trained workdir, or compares several.

    python eval.py --workdir W [--num_samples N] [--inception_weights PATH]  ->  W/eval.json
    python eval.py --workdir W --set sampler.guidance_scale=3 --set sampler.num_steps=100
    python eval.py --compare W1 W2 ... [--out DIR]  ->  DIR/comparison.md and DIR/comparison.png
"""

import sys

from absl import app, flags, logging

from genmodels import cli, compare, evaluation, xla_cpu
from genmodels.training import parallel

xla_cpu.configure()  # before the first JAX computation

USAGE = 'python eval.py --workdir W [--set section.key=value] (or --compare W1 W2 ...)'
FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'A workdir written by train.py.')
flags.DEFINE_integer('max_examples', None, 'Evaluate on the first N test examples only.')
flags.DEFINE_integer('iwae_k', None, 'Importance samples for the likelihood bound (default: the '
                     "config's eval.iwae_k).")
flags.DEFINE_integer('num_samples', None, 'Generated images for FID/KID/IS/precision/recall '
                     "(default: the config's eval.num_samples).")
flags.DEFINE_string('inception_weights', None, "Path of pytorch-fid's InceptionV3 weights "
                    '(pt_inception-2015-12-05-6726825d.pth): sample metrics on datasets other '
                    'than MNIST digits need it.')
flags.DEFINE_string('stats_cache', None, 'Directory caching the real data\'s reference '
                    'statistics (default: <workdir>/reference_stats).')
flags.DEFINE_multi_string('set', [], 'section.key=value: change a setting that does not change '
                          'the trained model (a sampler\'s steps or guidance scale, eval.*); '
                          'repeat for several.')
flags.DEFINE_bool('compare', False, 'Compare the eval.json of the workdirs given as arguments.')
flags.DEFINE_string('out', '.', 'Output directory of --compare.')
cli.define_compile_cache_flag()


def main(argv):
    if not FLAGS['verbosity'].present:
        logging.set_verbosity(logging.WARNING)  # Orbax and TFDS log every file at INFO.
    if FLAGS.compare:
        try:
            paths = compare.compare(argv[1:], FLAGS.out)
        except (ValueError, FileNotFoundError) as e:
            sys.exit(f'error: {e}')
        print(' '.join(paths))
        return
    cli.no_positional_arguments(argv, USAGE)
    if FLAGS.workdir is None:
        sys.exit(f'error: --workdir is required; usage: {USAGE}')
    parallel.maybe_initialize_distributed()
    cli.use_compile_cache(FLAGS.compile_cache)
    try:
        overrides = evaluation.parse_settings(FLAGS.set, FLAGS.workdir)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f'error: {e}')
    flagged = {'eval.iwae_k': FLAGS.iwae_k, 'eval.num_samples': FLAGS.num_samples}
    overrides |= {key: value for key, value in flagged.items() if value is not None}
    try:
        metrics = evaluation.evaluate_workdir(FLAGS.workdir, FLAGS.max_examples, overrides,
                                              inception_weights=FLAGS.inception_weights,
                                              stats_cache=FLAGS.stats_cache)
    except (ValueError, OSError, RuntimeError) as e:
        sys.exit(f'error: {e}')
    print(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in metrics.items()))


if __name__ == '__main__':
    app.run(main, flags_parser=cli.parse_flags)
