"""Exports a trained classifier workdir as a shipped feature extractor's weights.

    python train.py --config configs/classifier_mnist.py --workdir workdirs/classifier_mnist
    python -m tools.export_classifier --workdir workdirs/classifier_mnist \
        --out genmodels/metrics/weights/mnist_classifier.npz

Then put the printed sha256 in genmodels/metrics/classifiers.py (SHIPPED).
"""

import argparse
import os

from absl import logging

from genmodels import evaluation, families
from genmodels.metrics import classifiers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workdir', required=True, help='trained by configs/classifier_*.py')
    parser.add_argument('--out', required=True, help='the .npz to write')
    args = parser.parse_args(argv)
    logging.set_verbosity(logging.ERROR)  # Orbax warns that a read-only checkpoint is read-only.
    config, state, step = evaluation.restore(args.workdir)
    family = families.get(config.family)
    if family.__name__ != 'genmodels.families.classifier':
        raise SystemExit(f'error: {args.workdir} holds a {config.family!r} run, not a classifier.')
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    digest = classifiers.save_params(args.out, families.eval_params(family, config, state))
    print(f'wrote {args.out} (step {step}) sha256 {digest}')


if __name__ == '__main__':
    main()
