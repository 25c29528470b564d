"""eval.py --compare: one markdown table and one bar chart of the keys the runs share."""

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


def test_table_and_chart_hold_exactly_the_shared_keys(runs, tmp_path):
    md, png = compare.compare(list(runs), str(tmp_path / 'out'))
    lines = open(md).read().splitlines()
    assert lines[0] == '| key | vae | gmm |'
    assert [line.split(' | ')[0][2:] for line in lines[2:]] == [
        'family', 'dataset', 'step', 'fid_mnist_classifier', 'nll_nats', 'num_samples']
    assert '| nll_nats | 95.25 | 120 |' in lines
    records = [compare.load(r) for r in runs]
    charted = compare.chart_keys(records, compare.shared_keys(records))
    assert charted == ['fid_mnist_classifier', 'nll_nats']  # not step or num_samples
    assert os.path.getsize(png) > 5000


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
