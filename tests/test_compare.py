"""eval.py --compare: one markdown table of every key, with '-' where a run lacks it, and one bar
chart of the metrics two or more runs report."""

import json
import os
import subprocess
import sys

import pytest

from genmodels import compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(path, record):
    os.makedirs(path)
    with open(os.path.join(path, 'eval.json'), 'w') as f:
        json.dump(record, f)
    return str(path)


@pytest.fixture
def runs(tmp_path):
    vae = write_run(tmp_path / 'vae', {'family': 'vae', 'dataset': 'mnist_bundled', 'step': 10,
                                       'nll_nats': 95.25, 'fid_mnist_classifier': 3.5,
                                       'precision': 0.75, 'num_samples': 64})
    gmm = write_run(tmp_path / 'gmm', {'family': 'gmm', 'dataset': 'mnist_bundled', 'step': 1,
                                       'nll_nats': 120.0, 'fid_mnist_classifier': 9.0,
                                       'num_samples': 64, 'modes_covered': 10})
    return vae, gmm


def test_table_holds_every_key_and_chart_the_metrics_two_runs_share(runs, tmp_path):
    md, png = compare.compare(list(runs), str(tmp_path / 'out'))
    lines = open(md).read().splitlines()
    assert lines[0] == '| key | vae | gmm |'
    assert [line.split(' | ')[0][2:] for line in lines[2:]] == [
        'family', 'dataset', 'step', 'fid_mnist_classifier', 'modes_covered', 'nll_nats',
        'num_samples', 'precision']
    assert '| nll_nats | 95.25 | 120 |' in lines
    assert '| modes_covered | - | 10 |' in lines and '| precision | 0.75 | - |' in lines
    records = [compare.load(r) for r in runs]
    charted = compare.chart_keys(records, compare.all_keys(records))
    # Not step or num_samples (settings), nor precision or modes_covered (one run each).
    assert charted == ['fid_mnist_classifier', 'nll_nats']
    assert os.path.getsize(png) > 5000


def test_runs_with_no_metric_in_common_are_refused_with_their_keys(tmp_path):
    gan = write_run(tmp_path / 'gan', {'family': 'gan', 'label_accuracy': 0.9})
    kde = write_run(tmp_path / 'kde', {'family': 'kde', 'nll_nats': 100.0})
    with pytest.raises(ValueError, match='no metric is in two or more.*label_accuracy, nll_nats'):
        compare.compare([gan, kde], str(tmp_path / 'out'))


def test_eval_py_compare_takes_workdirs_as_arguments(runs, tmp_path):
    out = subprocess.run([sys.executable, 'eval.py', '--compare', *runs, '--out',
                          str(tmp_path / 'cmp')], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / 'cmp')) == ['comparison.md', 'comparison.png']


def test_missing_eval_json_says_what_to_run(tmp_path):
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(FileNotFoundError, match='run eval.py --workdir'):
        compare.compare([str(tmp_path / 'empty')], str(tmp_path / 'out'))
