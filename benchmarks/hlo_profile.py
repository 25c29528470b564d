"""Where a compiled step's time goes: each HLO op's time in one step under jax.profiler.

`hlo_ops` reads a compiled module's text (`compiled.as_text()`) into op name -> (opcode, kernel,
the jax op it came from); `op_times` runs one step under `jax.profiler.trace` and sums each op's
events of the perfetto trace; `by_kind` groups them (convolutions by the layout XLA:CPU runs them
in, dots, YNNPACK fusions, XLA's own fusions of elementwise ops and reductions, the rest);
`summary` is what `benchmarks/run.py --profile` records. Used there and by bench_dcgan_step.py and
bench_ddpm_step.py.
"""

from __future__ import annotations

import glob
import gzip
import json
import re
import tempfile
import time
from typing import Callable

import jax

CANONICAL_NOTE = (
    "'conv <dim_labels>': a convolution XLA:CPU runs itself. Its canonicalization pass rewrites "
    'convolutions into\nb01f_01io->b01f, the form its library kernels take, but only those of '
    'top-level computations (xla/service/\ncpu/conv_canonicalization.h): those of a loop body, '
    "such as lax.scan's, keep other layouts.")
CONTROL_FLOW = ('while', 'call', 'conditional')  # their bodies' ops are timed instead


def hlo_ops(hlo: str) -> dict[str, tuple[str, str, str]]:
    """HLO instruction name -> (opcode, kernel, where) of a compiled module's text. kernel: for a
    fusion that XLA:CPU hands to YNNPACK, 'YNNPACK <root op>'; for a convolution it runs itself,
    'conv <dim_labels>' (b01f_01io->b01f is the form its library kernels take). where: the jax
    op_name, shortened; '[scan]' marks the D step, which gan.py runs in lax.scan over n_disc."""
    roots, comp, ops = {}, None, {}  # roots: computation -> (root opcode, root's jax op)
    for line in hlo.splitlines():
        head = re.match(r'%(\S+) .*\{$', line)
        if head and not line.startswith(' '):
            comp = head.group(1)
        m = re.match(r'\s*(ROOT )?%(\S+) = \S+ ([\w\-.]+)\(', line)
        if not m:
            continue
        opcode = m.group(3)
        kernel = opcode
        if opcode == 'convolution':
            kernel = 'conv ' + re.search(r'dim_labels=(\S+?),?\s', line + ' ').group(1)
        name = re.search(r'op_name="([^"]*)"', line)
        where = name.group(1) if name else ''
        if m.group(1):
            roots[comp] = (opcode, where)
        where = short(where)
        calls = re.search(r'calls=%([\w.\-]+)', line)
        ops[m.group(2)] = (opcode, kernel, where, calls.group(1) if calls else None,
                           '__ynn_fusion' in line)
    out = {}
    for n, (op, kernel, where, called, ynn) in ops.items():
        root_op, root_where = roots.get(called, ('?', ''))
        out[n] = (op, f'YNNPACK {root_op}' if ynn else kernel,
                  where or short(root_where) or '(no jax op name: made by an XLA pass)')
    return out


def short(op_name: str) -> str:
    for a, b in (('jit(<lambda>)/', ''), ('while/body/closed_call/', '[scan] '),
                 ('Discriminator._layer/', ''), ('/conv_general_dilated', '')):
        op_name = op_name.replace(a, b)
    op_name = re.sub(r'transpose\(jvp\((\w+)\)\)', r'\1 bwd', op_name)
    return re.sub(r'jvp\((\w+)\)', r'\1', op_name)


def op_times(run_step: Callable[[], None], ops: dict[str, tuple[str, str, str]]
             ) -> tuple[float, dict[str, float]]:
    """(wall seconds of `run_step()` under jax.profiler, tracing included; HLO op name -> ms
    summed over its events in the trace) for the ops of `hlo_ops`."""
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            start = time.perf_counter()
            run_step()
            wall = time.perf_counter() - start
        with gzip.open(glob.glob(f'{tmp}/**/perfetto_trace.json.gz', recursive=True)[0]) as f:
            events = json.load(f)
    events = events['traceEvents'] if isinstance(events, dict) else events
    leaf = {n for n, (op, _, _) in ops.items() if op not in CONTROL_FLOW}
    ms = {}
    for e in events:
        if e.get('ph') == 'X' and e.get('name') in leaf:
            ms[e['name']] = ms.get(e['name'], 0.0) + e.get('dur', 0) / 1e3
    return wall, ms


def kind(kernel: str) -> str:
    if kernel.startswith('YNNPACK'):
        return 'YNNPACK fusions'
    if kernel == 'conv b01f_01io->b01f':
        return 'convolutions, canonical'
    if kernel.startswith('conv'):
        return 'convolutions, other layouts'
    if kernel == 'dot':
        return 'dots'
    return 'fusions' if kernel == 'fusion' else 'everything else'


def by_kind(ops: dict[str, tuple[str, str, str]], ms: dict[str, float]) -> dict[str, float]:
    out = {}
    for name, t in ms.items():
        k = kind(ops[name][1])
        out[k] = out.get(k, 0.0) + t
    return out


def summary(run_step: Callable[[], None], hlo: str, top: int = 5) -> dict:
    """One step's profile as a record entry: the ops' total ms, ms by kind, and the `top` ops as
    [ms, HLO op, kernel, jax op]."""
    ops = hlo_ops(hlo)
    _, ms = op_times(run_step, ops)
    slowest = sorted(ms.items(), key=lambda kv: -kv[1])[:top]
    return {'ops_ms': sum(ms.values()),
            'by_kind_ms': dict(sorted(by_kind(ops, ms).items(), key=lambda kv: -kv[1])),
            'top_ops': [[t, name, ops[name][1], ops[name][2]] for name, t in slowest]}
