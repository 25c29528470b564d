"""What the harness knows about the machine: threads, device kind, peak FLOP/s, peak memory.

Threads. `pin_threads(n)` holds JAX and the classical references to n threads: the process's CPU
affinity (XLA:CPU sizes its thread pool from the CPUs the process may run on, once, when JAX
creates its CPU backend, so this must come before the first JAX computation: `python -m
benchmarks.run --threads N` does it first) and OpenBLAS/MKL/OpenMP through threadpoolctl
(scikit-learn, SciPy, NumPy); `set_torch_threads(n)` holds torch's intra-op pool to the same n.

Peaks. On CPU the peak is measured: the best of a few jitted float32 (or bfloat16) matmuls, so
MFU says how far a step is from what XLA's own matmul reaches on this machine, under the same load.
On GPU and TPU it is the vendor's published dense peak for the step's compute dtype (PEAK_TFLOPS);
an unknown kind gets no peak and no MFU.
"""

from __future__ import annotations

import os
import resource
import time

import jax
import jax.numpy as jnp
from threadpoolctl import threadpool_limits

# Published dense peaks per chip, TFLOP/s, by a substring of jax's device_kind. 'float32' is what
# JAX's default matmul precision runs float32 at: TF32 tensor cores on Ampere and later GPUs,
# bfloat16 passes on TPU (so both dtypes share the TPU figure).
PEAK_TFLOPS = {
    'H200': {'float32': 494.5, 'bfloat16': 989.0},       # NVIDIA H200 SXM (TF32 / BF16 dense)
    'H100 PCIe': {'float32': 378.0, 'bfloat16': 756.0},  # NVIDIA H100 PCIe
    'H100': {'float32': 494.5, 'bfloat16': 989.0},       # NVIDIA H100 SXM
    'A100': {'float32': 156.0, 'bfloat16': 312.0},       # NVIDIA A100 (TF32 / BF16 dense)
    'L4': {'float32': 60.0, 'bfloat16': 121.0},          # NVIDIA L4
    'V100': {'float32': 15.7, 'bfloat16': None},         # no bfloat16 tensor cores
    'TPU v6 lite': {'float32': 918.0, 'bfloat16': 918.0},  # Trillium (v6e)
    'TPU v5 lite': {'float32': 197.0, 'bfloat16': 197.0},  # v5e
    'TPU v5': {'float32': 459.0, 'bfloat16': 459.0},       # v5p
    'TPU v4': {'float32': 275.0, 'bfloat16': 275.0},
    'TPU v3': {'float32': 123.0, 'bfloat16': 123.0},
    'TPU v2': {'float32': 45.0, 'bfloat16': 45.0},
}


def pin_threads(n: int) -> None:
    """Holds XLA:CPU (if its backend has not started yet) and BLAS/OpenMP to n threads (torch:
    `set_torch_threads`)."""
    usable = sorted(os.sched_getaffinity(0))
    if not 1 <= n <= len(usable):
        raise ValueError(f'--threads {n}: this process may use {len(usable)} CPUs; give 1 to '
                         f'{len(usable)}.')
    os.sched_setaffinity(0, usable[:n])
    for var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[var] = str(n)  # for libraries loaded from here on
    threadpool_limits(n)  # for those already loaded (NumPy's OpenBLAS)


def set_torch_threads(n: int) -> None:
    """torch.set_num_threads(n); call it only where torch is installed."""
    import torch  # a benchmark-only dependency: imported only where it is installed
    torch.set_num_threads(n)


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0))


def device_kind() -> str:
    return jax.devices()[0].device_kind


def platform() -> str:
    return jax.devices()[0].platform


def busy_cores(seconds: float = 1.0) -> float:
    """Cores kept busy (Linux /proc/stat) over `seconds` while this process sleeps; nan if
    unknown."""
    def sample():
        with open('/proc/stat') as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # all but idle and iowait
    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return float('nan')
    return (busy1 - busy0) / max(total1 - total0, 1) * os.cpu_count()


_measured: dict[str, tuple[float, str]] = {}


def peak_tflops(compute_dtype: str, matmul_size: int) -> tuple[float | None, str]:
    """(peak TFLOP/s of one device for `compute_dtype`, where the figure comes from)."""
    if platform() == 'cpu':
        if compute_dtype not in _measured:
            _measured[compute_dtype] = measured_matmul_tflops(compute_dtype, matmul_size)
        return _measured[compute_dtype]
    kind = device_kind()
    for name, peaks in PEAK_TFLOPS.items():  # the most specific name comes first
        if name.lower() in kind.lower() and peaks.get(compute_dtype):
            return peaks[compute_dtype], f'published dense {compute_dtype} peak of {name}'
    return None, f'no published peak for {kind!r} {compute_dtype} in benchmarks/hardware.py'


def measured_matmul_tflops(compute_dtype: str, n: int, repeats: int = 5) -> tuple[float, str]:
    """Best TFLOP/s of a jitted [n, n] @ [n, n] in `compute_dtype` over `repeats` calls."""
    dtype = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float64': jnp.float64}[compute_dtype]
    with jax.enable_x64(compute_dtype == 'float64'):
        a = jnp.ones((n, n), dtype)
        matmul = jax.jit(lambda x: x @ x).lower(a).compile()
        jax.block_until_ready(matmul(a))
        best = float('inf')
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(matmul(a))
            best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e12, f'measured: best of {repeats} {n}x{n} {compute_dtype} matmuls'


# ------------------------------------------------------------------------------------------------
# Peak memory

CLEAR_REFS = '/proc/self/clear_refs'


def reset_peak_memory() -> None:
    """Restarts the process's resident-set high-water mark (Linux: '5' to clear_refs), so the
    next `peak_memory` covers one measurement; a no-op where that is not possible."""
    try:
        with open(CLEAR_REFS, 'w') as f:
            f.write('5')
    except OSError:
        pass


def peak_memory() -> tuple[int, str]:
    """(bytes, source): the devices' peak_bytes_in_use where the backend reports it (the largest
    over local devices), else the process's resident-set high-water mark."""
    stats = [d.memory_stats() or {} for d in jax.local_devices()]
    if all('peak_bytes_in_use' in s for s in stats):
        return max(s['peak_bytes_in_use'] for s in stats), 'device peak_bytes_in_use'
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024, 'process RSS high-water mark'
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 'process peak RSS'
