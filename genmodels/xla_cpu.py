"""XLA:CPU settings that measured faster on this project's machines, applied by the entry points
(train.py, eval.py, the benchmarks, the tests) before JAX creates its CPU backend.

XLA:CPU hands convolutions, dots, reductions and elementwise ops to YNNPACK ("YNN fusions") by
default in jax 0.10. Without them, with XLA's own kernels, every convolutional train step measured
faster on the 2-core x86 CPU and the MLP steps the same (measured: docs/benchmarks.md;
`python benchmarks/bench_ddpm_step.py` prints which setting it ran with). The flag only concerns
the CPU backend; GPU and TPU runs are unaffected. A user who sets
`--xla_cpu_experimental_ynn_fusion_type` in XLA_FLAGS keeps their value. `configure` also sets
glibc's allocator to reuse the heap for host arrays (`keep_host_arrays_on_heap`), on every backend:
the data pipeline's batches are host arrays.

KDE's programs (genmodels/classical/kde.py, kde_kernels.py) are one large matmul with
elementwise maps and reductions, and there YNNPACK's dot, elementwise and reduce fusions measured
faster than both XLA's kernels and XLA's defaults (docs/benchmarks.md). Their jits (`jit` below)
ask for those three fusions per program (`compiler_options`, which apply to that program only),
unless the user set the flag. The DCGAN step measured slower with them, so the neural nets keep the
global setting. XLA:CPU fails with those three fusions on programs holding a
batch of D x D matrices ("Instruction with unsupported layout in YNN fusion": EM's [K, D, D]
precisions at K = D = 16, KDE's cross-validation over 21 bandwidths at D >= 16), and only when the
program runs, so `kde.cv_factor` uses plain jax.jit, EM asks for XLA's default (each dot alone to
YNNPACK, `DOT_FUSIONS`: 2x faster than XLA's kernels there), and `jit` below waits for each
top-level call and, should YNN fail on a new shape, runs that function without YNN fusions from
then on.

Rematerialisation (train.remat, `jax.checkpoint`) needs one more per-program option on XLA:CPU:
its `cse_barrier_expander` pass removes the optimization barriers that jax.checkpoint places
around the recomputation, early in the pipeline, and the CSE that follows merges the recomputed
values back into the forward pass's, so remat saved nothing (a step's temp memory identical with
and without it). `REMAT_PASSES` is skipped for the train step of a run with remat
(`remat_options`; measured: docs/benchmarks.md).
"""

import ctypes
import functools
import logging
import os

FLAG = '--xla_cpu_experimental_ynn_fusion_type'
LIBRARY_FUSIONS = ('LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE,'
                   'LIBRARY_FUSION_TYPE_REDUCE')
# XLA's own default: each dot alone to YNNPACK. EM's programs (whitening and scatter products)
# measured 2x faster with it than with XLA's kernels, and fail with LIBRARY_FUSIONS.
DOT_FUSIONS = 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'

DISABLED_PASSES = '--xla_disable_hlo_passes'
# XLA:CPU passes that undo jax.checkpoint's recomputation (see above).
REMAT_PASSES = 'cse_barrier_expander'


def configure(environ=os.environ) -> None:
    """Adds `FLAG=` (no YNN fusions) to XLA_FLAGS unless it is already there, and keeps large host
    arrays on the C heap (`keep_host_arrays_on_heap`). Call it before the first JAX computation:
    XLA reads XLA_FLAGS once, when it creates the backend."""
    add_default(FLAG, '', environ)
    keep_host_arrays_on_heap()


# glibc's mallopt parameters, and the values set: arrays up to 64 MiB come from the heap (glibc's
# own threshold starts at 128 KiB and grows to 32 MiB at most), and up to 256 MiB of freed heap
# stays mapped for the next batch.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HEAP_SETTINGS = ((M_MMAP_THRESHOLD, 64 << 20), (M_TRIM_THRESHOLD, 256 << 20))


def keep_host_arrays_on_heap() -> bool:
    """Where the C library is glibc, serves host arrays of up to 64 MiB from its heap and keeps
    freed heap mapped. By default each array above 128 KiB is a fresh mmap whose pages fault in on
    first touch: the binarisation of one 1,024-digit batch took 4.0 ms that way and 1.9 ms with
    these settings, and the MLP VAE's loop at batch 1,024 ran 17% more steps/s
    (docs/benchmarks.md). Returns whether the settings took; elsewhere it does nothing."""
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:
        return False
    return all(libc.mallopt(param, value) == 1 for param, value in HEAP_SETTINGS)


def add_default(flag: str, value: str, environ=os.environ) -> None:
    """Appends `flag=value` to XLA_FLAGS unless the flag is already there (the user's value
    stands)."""
    flags = environ.get('XLA_FLAGS', '')
    if flag not in flags:
        environ['XLA_FLAGS'] = f'{flags} {flag}={value}'.strip()


def library_fusion_options(environ=os.environ,
                           fusions: str = LIBRARY_FUSIONS) -> dict[str, str] | None:
    """Compiler options turning YNN's `fusions` (default: dot, elementwise and reduce) on for one
    program; None when XLA_FLAGS holds a user's own value of the flag (kept for every program)."""
    flags = environ.get('XLA_FLAGS', '').split()
    if any(f.startswith(FLAG) and f != f'{FLAG}=' for f in flags):
        return None
    return {FLAG[2:]: fusions}


def remat_options(environ=os.environ) -> dict[str, str] | None:
    """Compiler options that keep jax.checkpoint's recomputation in one XLA:CPU program: the
    passes disabled in XLA_FLAGS (the user's) plus REMAT_PASSES. None on other backends, whose
    pipelines keep the barriers until after their last CSE."""
    import jax
    if jax.default_backend() != 'cpu':
        return None
    user = [f.split('=', 1)[1] for f in environ.get('XLA_FLAGS', '').split()
            if f.startswith(f'{DISABLED_PASSES}=')]
    return {DISABLED_PASSES[2:]: ','.join(user + [REMAT_PASSES])}


def jit(fn=None, *, fusions: str = LIBRARY_FUSIONS, **kwargs):
    """jax.jit with YNN's `fusions` on XLA:CPU (library_fusion_options; default: dot, elementwise
    and reduce) when called at the top level; inside another trace (a caller's jit, vmap or grad),
    where JAX takes no compiler options, it is a plain nested jit and the caller's program decides.
    As a decorator, with or without jit's arguments. Other backends ignore the XLA:CPU option."""
    import jax  # here, so that importing this module never starts JAX before `configure`
    if fn is None:
        return functools.partial(jit, fusions=fusions, **kwargs)
    nested = jax.jit(fn, **kwargs)
    top = jax.jit(fn, compiler_options=library_fusion_options(fusions=fusions), **kwargs)
    fell_back = []  # non-empty once YNN failed on this function: plain jit from then on

    @functools.wraps(fn)
    def call(*args, **kw):
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kw)))
        if traced or fell_back:
            return nested(*args, **kw)
        try:  # YNN rejects some layouts only when the program runs: wait for it here
            return jax.block_until_ready(top(*args, **kw))
        except jax.errors.JaxRuntimeError as e:
            if 'YNN' not in str(e):
                raise
            logging.warning('%s: XLA:CPU failed on YNN fusions (%s); running it without them.',
                            getattr(fn, '__name__', fn), str(e).splitlines()[0][:200])
            fell_back.append(True)
            return nested(*args, **kw)
    call.lower = top.lower  # the top-level program, for cost and memory analyses
    return call
