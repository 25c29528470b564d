"""Prepares mnist, fashion_mnist or cifar10 as TFDS's own dataset from its original files, offline.

    .venv/bin/python -m tools.prepare_data fashion_mnist --from /usr/share/datasets/fashion-mnist
    .venv/bin/python -m tools.prepare_data mnist --from ~/Downloads/mnist --data_dir /data/tfds

Which files each needs, their sha256 and where they come from: genmodels/data/originals.py. Then
`data.name=NAME` (with `data.data_dir` set to --data_dir if you gave one) reads the dataset.
Fashion-MNIST needs no command where Debian's `dataset-fashion-mnist` is installed: it is prepared
on first use.
"""

import argparse

from genmodels.data import originals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('name', choices=sorted(originals.ORIGINALS))
    parser.add_argument('--from', dest='folder', default=None,
                        help='folder holding the original files (default: the searched folders)')
    parser.add_argument('--data_dir', default=None, help="TFDS data dir (default: TFDS's own)")
    args = parser.parse_args(argv)
    try:
        builder = originals.prepare(args.name, args.data_dir, args.folder)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'error: {e}') from None
    splits = ', '.join(f'{s} {info.num_examples}' for s, info in builder.info.splits.items())
    print(f'{args.name} is prepared in {builder.data_dir} ({splits}).')


if __name__ == '__main__':
    main()
