"""What a run writes and how two runs compare: results.json, results.md, scaling.png, compare.md.

results.json is {'environment': {...}, 'records': [...], 'skipped': [...]} (and 'resumed': the
environments of later sittings, with --resume): one record per (config, batch size, device set)
for deep configs, one per classical row, each with the environment's identity keys (device_kind,
num_devices, threads) and the date and commit it was measured at, so that a record stands alone.
"""

from __future__ import annotations

import json
import math
import os

import matplotlib

matplotlib.use('Agg')  # No display on benchmark machines.
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

# What identifies a record when two runs are compared (the machine is what differs), and the
# settings that the comparison's title states rather than tables.
IDENTITY = ('config', 'batch_size')
SETTINGS = ('num_devices', 'threads', 'n', 'd', 'k', 'queries', 'points', 'bandwidth')
LOADED = 0.2  # busy CPUs of other processes, as a fraction of ours, above which the notes warn


def load(path: str) -> dict:
    """A results.json, given as the file or the --out directory that holds it."""
    if os.path.isdir(path):
        path = os.path.join(path, 'results.json')
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path} not found: give a results.json written by '
                                f'python -m benchmarks.run --out DIR.')
    with open(path) as f:
        results = json.load(f)
    if not isinstance(results, dict) or 'records' not in results:
        raise ValueError(f'{path} is not a benchmarks.run results.json (no "records").')
    return results


def write(results: dict, out_dir: str) -> list[str]:
    """results.json, results.md and (with deep records) scaling.png in out_dir; their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, 'results.json'), os.path.join(out_dir, 'results.md')]
    with open(paths[0], 'w') as f:
        json.dump(results, f, indent=2)
    with open(paths[1], 'w') as f:
        f.write(markdown(results))
    deep = [r for r in results['records'] if r.get('batch_size') is not None]
    if deep:
        paths.append(scaling_figure(deep, os.path.join(out_dir, 'scaling.png')))
    return paths


# ------------------------------------------------------------------------------------------------
# Markdown

def fmt(value, spec: str = '.3g') -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in rows]) + '\n'


def deep_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for r in records:
        samples = r['sample_images_per_second']
        rows.append([
            r['config'], r['family'], str(r['batch_size']), str(r['num_devices']),
            fmt(r['compile_seconds'], '.2f'),
            f"{fmt(r['step_ms_median'])} ({fmt(r['step_ms_p10'])}-{fmt(r['step_ms_p90'])})",
            fmt(r['examples_per_second'], '.4g'), fmt(r['flops_per_step'] / 1e9, '.3g'),
            fmt(r['achieved_tflops'], '.3g'), fmt(r['mfu'], '.1%'),
            fmt(r['peak_memory_bytes'] / 2 ** 20, '.0f'),
            f"{fmt(r['loop_steps_per_second'], '.3g')} "
            f"({fmt(r['loop_fraction_of_step_rate'], '.0%')}; {r.get('loop_log_every', '-')})",
            fmt(r['torch_step_ms_median']), speedup_cell(r),
            sample_cell(samples, r.get('sample_rates_batch_size'), r['batch_size'])])
    return rows


def speedup_cell(r: dict) -> str:
    """The per-round speed-up over torch, 'median (p10-p90)' where the record has the spread."""
    text = fmt(r['speedup_vs_torch'], '.2f')
    if r.get('speedup_vs_torch_p10') is not None:
        text += f" ({fmt(r['speedup_vs_torch_p10'], '.2f')}-{fmt(r['speedup_vs_torch_p90'], '.2f')})"
    return text


def sample_cell(samples: dict | None, timed_at: int | None, batch_size: int) -> str:
    """Each sampler's images/s; 'as at batch B' where another record of the config timed them."""
    if not samples:
        return '-'
    text = ', '.join(f'{k} {v:.3g}' for k, v in samples.items())
    return text if timed_at in (None, batch_size) else f'as at batch {timed_at}'


DEEP_HEADER = ['config', 'family', 'batch', 'devices', 'compile s', 'step ms median (p10-p90)',
               'examples/s', 'GFLOP/step', 'TFLOP/s', 'MFU', 'peak mem MiB',
               'loop steps/s (of step rate; steps per log)', 'torch ms',
               'speedup vs torch, per round (p10-p90)', 'samples/s']


def markdown(results: dict) -> str:
    env, records = results['environment'], results['records']
    out = [f"# Benchmarks: {env['device_kind']} x {env['num_devices']}, {env['threads']} "
           f"thread(s)\n",
           f"jax {env['jax']}, torch {env['torch'] or 'not installed'}, commit "
           f"{env['commit'] or 'unknown'}, {env['date']}; other processes kept "
           f"{fmt(env['other_load_cores'], '.1f')} of {env['cpus']} CPUs busy before timing. "
           f"{'Smoke run: tiny batches and few steps, not for a table.' if env['smoke'] else ''}"
           '\n']
    for later in results.get('resumed', []):
        out.append(f"\nContinued (--resume) at commit {later['commit'] or 'unknown'}, "
                   f"{later['date']}; other processes kept {fmt(later['other_load_cores'], '.1f')} "
                   f"of {later['cpus']} CPUs busy. Each record's `date` and `commit` say which "
                   'sitting measured it.\n')
    # One row per (config, batch size) in that order, whichever sitting measured it.
    deep = sorted((r for r in records if r.get('batch_size') is not None),
                  key=lambda r: (r['config'], r['batch_size']))
    if deep:
        peaks = list(dict.fromkeys(fmt(r['peak_tflops'], '.3g') for r in deep))
        peak_text = ' / '.join(peaks) + ' TFLOP/s' + (', each record against its sitting'
                                                      if len(peaks) > 1 else '')
        out += ['\n## Deep configs: the train step\n\n',
                'step: the trainer\'s jitted step alone, timed step by step after warm-up; loop: '
                "train_and_evaluate's own steps/s (median of its logged intervals), as a share of "
                "the bare step's rate timed before and after it; MFU against "
                f"{deep[0]['peak_source']} ({peak_text}); "
                f"peak memory: {deep[0]['peak_memory_source']}.\n\n",
                table(DEEP_HEADER, deep_rows(deep))]
    em = [r for r in records if r['config'] == 'em']
    if em:
        out += ['\n## EM (Gaussian mixture, full covariances)\n\n', table(
            ['N', 'D', 'K', 'jax ms/iter', 'GFLOP/iter', 'share of the matmul peak',
             'scikit-learn ms/iter (its fastest setting)',
             'speedup', 'float64: jax ms/iter, share of the float64 peak, speedup',
             'fit s: jax (iterations)', 'fit s: scikit-learn (iterations)'],
            [[str(r['n']), str(r['d']), str(r['k']), fmt(r['em_iteration_ms']),
              fmt(r.get('em_gflop_per_iteration'), '.2f'), fmt(r.get('em_share_of_peak'), '.1%'),
              f"{fmt(r['sklearn_em_iteration_ms'])} ({fmt(r['sklearn_setting'])})",
              fmt(r['speedup_vs_sklearn'], '.1f'),
              f"{fmt(r.get('em_iteration_ms_float64'))}, "
              f"{fmt(r.get('em_share_of_peak_float64'), '.1%')}, "
              f"{fmt(r.get('speedup_vs_sklearn_float64'), '.1f')}",
              f"{fmt(r['fit_seconds'])} ({r['fit_iterations']})",
              f"{fmt(r['sklearn_fit_seconds'])} ({r['sklearn_fit_iterations']})"] for r in em])]
    kde = [r for r in records if r['config'] == 'kde']
    if kde:
        out += ['\n## KDE log-density (Gaussian kernel, exact)\n\n', table(
            ['queries x points', 'D', 'jax f32 s', 'jax f64 s', 'scikit-learn s', 'SciPy s',
             'speedup vs scikit-learn', 'speedup vs SciPy'],
            [[f"{r['queries']} x {r['points']}", str(r['d']), fmt(r['score_seconds']),
              fmt(r['score_seconds_float64']), fmt(r['sklearn_score_seconds']),
              fmt(r['scipy_score_seconds']), fmt(r['speedup_vs_sklearn'], '.1f'),
              fmt(r['speedup_vs_scipy'], '.1f')] for r in kde])]
    loaded = env['other_load_cores'] > LOADED * env['cpus'] and env['threads'] > 1
    goals = targets(deep + [r for r in records if r.get('batch_size') is None],
                    torch_biased=loaded)
    if goals and env['platform'] == 'cpu':
        out += ['\n## Targets of issue 11 (2-core CPU)\n\n',
                table(['target', 'measured', 'met'], goals)]
    profiled = [r for r in deep if r.get('profile')]
    if profiled:
        out += ['\n## Where the time goes (--profile: one step under jax.profiler)\n\n', table(
            ['config', 'batch', 'HLO ops ms', 'by kind, ms', 'slowest ops: ms, kernel, jax op'],
            [[r['config'], str(r['batch_size']), fmt(r['profile']['ops_ms'], '.1f'),
              ', '.join(f'{k} {v:.1f}' for k, v in r['profile']['by_kind_ms'].items()),
              '; '.join(f'{t:.1f} {kernel} {where}'.replace('|', '/')
                        for t, _, kernel, where in r['profile']['top_ops'])]
             for r in profiled])]
    notes = [f"{r['config']}: {r['torch_note']}" for r in deep if r.get('torch_note')]
    if loaded:
        notes.append(f"other processes kept {env['other_load_cores']:.1f} of {env['cpus']} CPUs "
                     'busy: multi-threaded eager torch (OpenMP) loses far more to that than XLA '
                     '(measured here: the torch MLP VAE step 40x slower at 2 threads than at 1), '
                     'so speedup_vs_torch is biased toward JAX; compare at --threads 1 or on idle '
                     'cores.')
    notes += [f"{s['config']} batch {s['batch_size']}: skipped, {s['reason']}"
              for s in results.get('skipped', [])]
    if notes:
        out += ['\n## Notes\n\n'] + [f'- {n}\n' for n in dict.fromkeys(notes)]
    return ''.join(out)


def targets(records: list[dict], torch_biased: bool = False) -> list[list[str]]:
    """[target, measured, met] of each of issue 11's CPU targets that a record measures: MLP
    configs >= 1.5x torch's throughput, convolutional ones >= 0.5x; the real loop >= 90% of the
    bare step's rate; the MLP VAE at batch 1024 >= 50% of the matmul peak; EM >= 20x scikit-learn
    and 40% of the peak (issue 40); KDE >= 30x scikit-learn. torch_biased: load from other
    processes biased the torch ratios (see notes)."""
    def row(what, value, goal, biased=False, aside=''):
        met = 'yes' if value >= goal else 'no'
        return [f'{what} >= {goal:g}', fmt(value, '.2f') + aside,
                f'{met} (biased by load: see notes)' if biased else met]

    rows = []
    for r in records:
        name = f"{r['config']}" + (f" batch {r['batch_size']}" if r['batch_size'] else '')
        if r.get('speedup_vs_torch') is not None:
            mlp = r['architecture'] == 'mlp'
            goal = 1.5 if mlp else 0.5
            aside = ''
            if r['mfu'] is not None:  # same FLOPs on both sides: torch's MFU is ours / speedup
                torch_mfu = r['mfu'] / r['speedup_vs_torch']
                aside = (f' (torch at {torch_mfu:.0%} of the matmul peak, so {goal:g}x needs '
                         f'{goal * torch_mfu:.0%})')
            rows.append(row(f"{name}: speedup vs torch ({'MLP' if mlp else 'convolutional'})",
                            r['speedup_vs_torch'], goal, torch_biased, aside))
        if r.get('loop_fraction_of_step_rate') is not None:
            rows.append(row(f'{name}: loop rate / step rate', r['loop_fraction_of_step_rate'], 0.9))
        if (r['config'], r['batch_size']) == ('vae_mnist', 1024) and r['mfu'] is not None:
            rows.append(row(f'{name}: MFU (of the measured matmul peak)', r['mfu'], 0.5))
        if r['config'] == 'em':
            for key, what, goal in EM_TARGETS:
                if r.get(key) is not None:
                    rows.append(row(f'{name}: {what}', r[key], goal))
        if r['config'] in TARGET_VS_SKLEARN and r['speedup_vs_sklearn'] is not None:
            rows.append(row(f'{name}: speedup vs scikit-learn', r['speedup_vs_sklearn'],
                            TARGET_VS_SKLEARN[r['config']]))
    return rows


TARGET_VS_SKLEARN = {'em': 20.0, 'kde': 30.0}
# (record key, what it is, goal) of EM's other targets (issue 40); float32's speed-up is above.
EM_TARGETS = (('em_share_of_peak', 'share of the matmul peak', 0.4),
              ('em_share_of_peak_float64', 'float64: share of its matmul peak', 0.4),
              ('speedup_vs_sklearn_float64', 'float64: speedup vs scikit-learn',
               TARGET_VS_SKLEARN['em']))


# ------------------------------------------------------------------------------------------------
# Two runs side by side

def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare(a: dict, b: dict, names: tuple[str, str]) -> str:
    """A markdown table of every number two runs' matching records share, with the ratio B/A."""
    def key(r):
        return tuple(r.get(k) for k in IDENTITY)

    theirs = {key(r): r for r in b['records']}
    rows = []
    for r in a['records']:
        other = theirs.get(key(r))
        if other is None:
            continue
        for metric, value in r.items():
            if (metric in IDENTITY + SETTINGS
                    or not (_number(value) and _number(other.get(metric)))):
                continue
            ratio = other[metric] / value if value else None
            rows.append([r['config'], fmt(r.get('batch_size')), metric, fmt(value, '.4g'),
                         fmt(other[metric], '.4g'), fmt(ratio, '.3g')])
    if not rows:
        raise ValueError(f'{names[0]} and {names[1]} share no (config, batch size) record: '
                         f'run the same --configs and --batch_sizes on both.')
    ea, eb = a['environment'], b['environment']
    title = (f"# {names[0]} (A) vs {names[1]} (B)\n\nA: {ea['device_kind']} x "
             f"{ea['num_devices']}, {ea['threads']} thread(s), commit {ea['commit']}; B: "
             f"{eb['device_kind']} x {eb['num_devices']}, {eb['threads']} thread(s), commit "
             f"{eb['commit']}. B/A > 1: B's number is larger (faster for rates and speedups, "
             'slower for times).\n\n')
    return title + table(['config', 'batch', 'metric', 'A', 'B', 'B/A'], rows)


# ------------------------------------------------------------------------------------------------
# scaling.png

def scaling_figure(records: list[dict], path: str) -> str:
    """Step time and throughput against batch size, one line per config (torch dashed), log-log."""
    names = list(dict.fromkeys(r['config'] for r in records))
    # Up to 10 configs: the default colour cycle; more (a full sweep has 20): tab20.
    colors = [f'C{i}' for i in range(10)] if len(names) <= 10 else list(plt.cm.tab20.colors)
    fig, (ax_t, ax_x) = plt.subplots(1, 2, figsize=(12 + 2 * (len(names) > 10), 4.5))
    for i, name in enumerate(names):
        rows = sorted((r for r in records if r['config'] == name), key=lambda r: r['batch_size'])
        b = [r['batch_size'] for r in rows]
        color = colors[i % len(colors)]
        ax_t.plot(b, [r['step_ms_median'] for r in rows], 'o-', color=color, label=name)
        ax_t.fill_between(b, [r['step_ms_p10'] for r in rows], [r['step_ms_p90'] for r in rows],
                          color=color, alpha=0.2)
        ax_x.plot(b, [r['examples_per_second'] for r in rows], 'o-', color=color, label=name)
        torch_rows = [r for r in rows if r['torch_step_ms_median']]
        if torch_rows:
            tb = [r['batch_size'] for r in torch_rows]
            ax_t.plot(tb, [r['torch_step_ms_median'] for r in torch_rows], 's--', color=color,
                      label=f'{name} (torch)')
            ax_x.plot(tb, [r['batch_size'] / r['torch_step_ms_median'] * 1e3
                           for r in torch_rows], 's--', color=color, label=f'{name} (torch)')
    sizes = sorted({r['batch_size'] for r in records})
    for ax, label in ((ax_t, 'step time, ms (median; band p10-p90)'),
                      (ax_x, 'throughput, examples / s')):
        ax.set_xscale('log', base=2)
        ax.set_yscale('log')
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.set_xlabel('batch size')
        ax.set_ylabel(label)
        ax.grid(True, which='both', alpha=0.3)
    if len(names) > 10:  # beside the panels, not over the lines
        ax_x.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.02, 1.0))
    else:
        ax_x.legend(fontsize=7, loc='best')
    fig.suptitle(f"{records[0]['device_kind']} x {records[0]['num_devices']}, "
                 f"{records[0]['threads']} thread(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
