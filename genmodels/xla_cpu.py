"""XLA:CPU settings that measured faster on this project's machines, applied by the entry points
(train.py, eval.py, the benchmarks, the tests) before JAX creates its CPU backend.

XLA:CPU hands convolutions, dots, reductions and elementwise ops to YNNPACK ("YNN fusions") by
default in jax 0.10. Without them, with XLA's own kernels, every convolutional train step measured
faster on the 2-core x86 CPU (same run, alternating): the DDPM U-Net step by 25% and its forward by
33%, the conv VAE step by 20%, the DCGAN step by 13%; the MLP VAE step is unchanged
(`python benchmarks/bench_ddpm_step.py` prints which setting it ran with). The flag only concerns
the CPU backend; GPU and TPU runs are unaffected. A user who sets
`--xla_cpu_experimental_ynn_fusion_type` in XLA_FLAGS keeps their value.
"""

import os

FLAG = '--xla_cpu_experimental_ynn_fusion_type'


def configure(environ=os.environ) -> None:
    """Adds `FLAG=` (no YNN fusions) to XLA_FLAGS unless it is already there. Call it before the
    first JAX computation: XLA reads XLA_FLAGS once, when it creates the backend."""
    flags = environ.get('XLA_FLAGS', '')
    if FLAG not in flags:
        environ['XLA_FLAGS'] = f'{flags} {FLAG}='.strip()
