"""What train.py and eval.py share: flag parsing whose every error is one line on stderr."""

import re
import sys

from absl import flags


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parser (the `flags_parser` of `app.run`), with one-line errors for a bad flag, a
    bad config file or an unknown config key."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
        guess = re.search(r'Did you mean "(\w+)" instead of "(\w+)"', str(e))
        hint = f'{guess[2]}; did you mean {guess[1]}?' if guess else ' '.join(str(e).split())
        sys.exit(f'error: unknown config key in an override: {hint}')
    except Exception as e:  # noqa: BLE001 - config files can raise anything; report its last line.
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        sys.exit(f'error: {lines[-1] if lines else type(e).__name__} (while parsing flags)')


def no_positional_arguments(argv: list[str], usage: str) -> None:
    if len(argv) > 1:
        sys.exit(f'error: unexpected arguments: {" ".join(argv[1:])}; usage: {usage}')
