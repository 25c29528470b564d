"""One table for several runs: every key of their eval.json files, as markdown and a bar chart.

Families report different metrics (a GAN has no likelihood, a GMM no label accuracy), so the table
holds every key, with '-' where a run lacks it; the chart has one panel per metric that two or more
runs report.

    python eval.py --compare W1 W2 ... --out DIR  ->  DIR/comparison.md, DIR/comparison.png
"""

from __future__ import annotations

import json
import math
import os

import matplotlib

matplotlib.use('Agg')  # No display on training machines.
import matplotlib.pyplot as plt  # noqa: E402

IDENTITY = ('family', 'dataset', 'split', 'step')  # first rows of the table, never charted
# Numbers that describe how a run was evaluated rather than how good it is: tabled, not charted.
SETTINGS = ('num_examples', 'num_samples', 'iwae_k', 'fid_data_floor_num_images')


def load(workdir: str) -> dict:
    path = os.path.join(workdir, 'eval.json')
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path} not found: run eval.py --workdir {workdir} first.')
    with open(path) as f:
        return json.load(f)


def run_names(workdirs: list[str]) -> list[str]:
    """Each workdir's last path component, or the whole path where two runs share it."""
    names = [os.path.basename(os.path.normpath(w)) for w in workdirs]
    return [n if names.count(n) == 1 else w for n, w in zip(names, workdirs)]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def all_keys(records: list[dict]) -> list[str]:
    """Keys of any record: the identity keys first, then the rest sorted."""
    keys = set.union(*(set(r) for r in records))
    return [k for k in IDENTITY if k in keys] + sorted(keys - set(IDENTITY))


def chart_keys(records: list[dict], keys: list[str]) -> list[str]:
    """The metrics among keys that two or more runs report, as numbers wherever present."""
    def charted(k):
        values = [r[k] for r in records if k in r]
        return len(values) >= min(2, len(records)) and all(_is_number(v) for v in values)
    return [k for k in keys if k not in IDENTITY + SETTINGS and not k.startswith('data_')
            and charted(k)]


def _cell(record: dict, key: str) -> str:
    if key not in record:
        return '-'
    v = record[key]
    return f'{v:.4g}' if isinstance(v, float) else str(v)


def markdown(names: list[str], records: list[dict], keys: list[str]) -> str:
    lines = ['| key | ' + ' | '.join(names) + ' |', '|---|' + '---:|' * len(names)]
    lines += [f'| {k} | ' + ' | '.join(_cell(r, k) for r in records) + ' |' for k in keys]
    return '\n'.join(lines) + '\n'


def bar_chart(names: list[str], records: list[dict], keys: list[str], path: str) -> str:
    """One panel per metric, one bar per run that reports it."""
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    colours = [f'C{i % 10}' for i in range(len(names))]
    for ax, key in zip(axes.flat, keys):
        ax.bar(range(len(names)), [r.get(key, math.nan) for r in records], color=colours)
        ax.set_title(key, fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=30, ha='right', fontsize=7)
        ax.tick_params(axis='y', labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis('off')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare(workdirs: list[str], out_dir: str) -> list[str]:
    """Writes out_dir/comparison.md (every key) and out_dir/comparison.png (the numeric metrics two
    or more runs report); returns their paths."""
    if not workdirs:
        raise ValueError('--compare needs workdirs: eval.py --compare W1 W2 ... [--out DIR].')
    records = [load(w) for w in workdirs]
    names = run_names(workdirs)
    keys = all_keys(records)
    metrics = chart_keys(records, keys)
    if not metrics:
        raise ValueError(f'no metric is in two or more of the eval.json files of '
                         f'{", ".join(names)}; their keys: {", ".join(keys) or "none"}.')
    os.makedirs(out_dir, exist_ok=True)
    md_path = os.path.join(out_dir, 'comparison.md')
    with open(md_path, 'w') as f:
        f.write(markdown(names, records, keys))
    return [md_path, bar_chart(names, records, metrics, os.path.join(out_dir, 'comparison.png'))]
