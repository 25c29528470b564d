"""Exports a trained classifier workdir as the shipped MNIST feature extractor's weights.

    python train.py --config configs/classifier_mnist.py --workdir workdirs/classifier_mnist
    python -m tools.export_mnist_classifier --workdir workdirs/classifier_mnist \
        --out genmodels/metrics/weights/mnist_classifier.npz

Then put the printed sha256 in genmodels/metrics/mnist_classifier.py (WEIGHTS_SHA256).
"""

import argparse
import os

from absl import logging

from genmodels import evaluation, families
from genmodels.metrics import mnist_classifier


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workdir', required=True, help='trained by configs/classifier_mnist.py')
    parser.add_argument('--out', default=mnist_classifier.WEIGHTS_PATH)
    args = parser.parse_args(argv)
    logging.set_verbosity(logging.ERROR)  # Orbax warns that a read-only checkpoint is read-only.
    config, state, step = evaluation.restore(args.workdir)
    family = families.get(config.family)
    if family.__name__ != 'genmodels.families.classifier':
        raise SystemExit(f'error: {args.workdir} holds a {config.family!r} run, not a classifier.')
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    digest = mnist_classifier.save_params(args.out, families.eval_params(family, config, state))
    print(f'wrote {args.out} (step {step}) sha256 {digest}')


if __name__ == '__main__':
    main()
