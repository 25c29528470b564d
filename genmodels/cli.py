"""What train.py and eval.py share: flag parsing whose every error is one line on stderr, and the
persistent compile cache.

The compile cache keeps every program XLA compiles on disk, keyed by the program, the jax/jaxlib
version and the device, so a resumed run or a second evaluation loads its programs instead of
compiling them again (time to the first step: docs/benchmarks.md). It lives in `--compile_cache`,
else $GENMODELS_COMPILE_CACHE, else ~/.cache/genmodels/xla; an empty value turns it off.
"""

import os
import re
import sys

from absl import flags

COMPILE_CACHE_ENV = 'GENMODELS_COMPILE_CACHE'
DEFAULT_COMPILE_CACHE = '~/.cache/genmodels/xla'


def define_compile_cache_flag() -> None:
    flags.DEFINE_string('compile_cache', None, 'Directory of the persistent XLA compile cache '
                        f'(default: ${COMPILE_CACHE_ENV}, else {DEFAULT_COMPILE_CACHE}); an empty '
                        'value turns it off.')


def use_compile_cache(path: str | None) -> str | None:
    """Points JAX's persistent compile cache at `path` (None: $GENMODELS_COMPILE_CACHE, else
    DEFAULT_COMPILE_CACHE; '': off) before the first compile; returns the directory used."""
    import jax

    if path is None:
        path = os.environ.get(COMPILE_CACHE_ENV, DEFAULT_COMPILE_CACHE)
    if not path:
        return None
    path = os.path.abspath(os.path.expanduser(path))
    jax.config.update('jax_compilation_cache_dir', path)
    # Every program, however quick to compile: a step is one large program, but an evaluation is
    # dozens of small ones, and together they are most of a short run's start-up.
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
    return path


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
