"""benchmarks.run end to end on a smoke config and a classical row: every record has every key
with a positive number (or null where the design says so), results.md holds the tables, --compare
puts two runs side by side. It never asserts a speed: timings here swing with other jobs."""

import json
import math
import os

import pytest

from benchmarks import report, run, torch_ref

# Every key issue 11 asks of a deep record, and what the harness adds beside them.
DEEP_KEYS = ('config', 'family', 'architecture', 'device_kind', 'num_devices', 'batch_size',
             'threads', 'compile_seconds', 'step_ms_median', 'step_ms_p10', 'step_ms_p90',
             'examples_per_second', 'flops_per_step', 'achieved_tflops', 'peak_tflops', 'mfu',
             'peak_memory_bytes', 'sample_images_per_second', 'loop_steps_per_second',
             'loop_log_every', 'step_ms_median_after_loop', 'loop_fraction_of_step_rate',
             'torch_step_ms_median', 'speedup_vs_torch', 'speedup_vs_torch_p10',
             'speedup_vs_torch_p90', 'torch_note', 'torch_check', 'peak_source', 'peak_memory_source',
             'step_memory_bytes', 'sample_rates_batch_size', 'date', 'commit')
TEXT_KEYS = ('config', 'family', 'architecture', 'device_kind', 'torch_note', 'torch_check',
             'peak_source', 'peak_memory_source', 'sample_images_per_second', 'date', 'commit')
# Null by design: the torch columns when no torch reference runs (torch is hidden below, as on a
# machine without it: the suite never depends on torch); torch_note when one does, torch_check
# when none does. peak_tflops and mfu are null only for a GPU/TPU kind without a published peak,
# never on CPU (measured there); sample_images_per_second for a family that does not sample.
TORCH_KEYS = ('torch_step_ms_median', 'speedup_vs_torch', 'speedup_vs_torch_p10',
              'speedup_vs_torch_p90', 'torch_check')
KDE_KEYS = ('score_seconds', 'score_seconds_float64', 'sklearn_score_seconds',
            'scipy_score_seconds', 'speedup_vs_sklearn', 'speedup_vs_scipy')


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_smoke_run_records_tables_and_compare(tmp_path, data_dir, monkeypatch):
    # One test, so that pytest-xdist's workers do not each run the harness.
    monkeypatch.setattr(torch_ref, 'available', lambda: False)
    written, write = [], report.write

    def counting_write(results, out_dir):  # results.json after each record, then at the end
        written.append((len(results['records']), results['complete']))
        return write(results, out_dir)

    monkeypatch.setattr(report, 'write', counting_write)
    out = str(tmp_path / 'a')
    results = run.main(['--smoke', '--configs', 'vae_mnist,kde', '--data_dir', data_dir,
                        '--out', out])
    assert written == [(1, False), (2, False), (2, True)]
    with open(os.path.join(out, 'results.json')) as f:
        assert json.load(f) == results
    check_records(results['records'])
    check_markdown(out)
    check_compare(out, results, tmp_path)
    check_resume(out, results, monkeypatch)


def check_resume(out: str, results: dict, monkeypatch) -> None:
    """--resume keeps the records already there and measures nothing again; another machine's run
    is refused (a device kind stands for any difference)."""
    def measured_again(*args, **kwargs):
        raise AssertionError('--resume measured a record that was already there')

    monkeypatch.setattr(run.deep, 'measure', measured_again)
    monkeypatch.setattr(run.classical, 'measure', measured_again)
    argv = ['--smoke', '--configs', 'vae_mnist,kde', '--resume', '--out', out]
    again = run.main(argv)
    assert again['records'] == results['records'] and len(again['resumed']) == 1
    with open(os.path.join(out, 'results.md')) as f:
        assert 'Continued (--resume)' in f.read()
    elsewhere = json.loads(json.dumps(again))
    elsewhere['environment']['device_kind'] = 'another machine'
    with open(os.path.join(out, 'results.json'), 'w') as f:
        json.dump(elsewhere, f)
    with pytest.raises(SystemExit, match='holds a run with'):
        run.main(argv)


def check_records(records: list[dict]) -> None:
    deep, kde = records
    assert (deep['config'], deep['family'], deep['batch_size']) == ('vae_mnist', 'vae',
                                                                    run.SMOKE_BATCH)
    assert set(DEEP_KEYS) <= set(deep)
    for key in set(DEEP_KEYS) - set(TORCH_KEYS) - set(TEXT_KEYS):
        assert positive(deep[key]), (key, deep[key])
    assert deep['step_ms_p10'] <= deep['step_ms_median'] <= deep['step_ms_p90']
    assert deep['sample_rates_batch_size'] == run.SMOKE_BATCH  # timed by this record
    assert kde['date'] and 'commit' in kde
    assert deep['sample_images_per_second'] and all(
        positive(v) for v in deep['sample_images_per_second'].values())
    assert all(deep[k] is None for k in TORCH_KEYS)
    assert torch_ref.INSTALL in deep['torch_note']
    assert kde['config'] == 'kde' and kde['batch_size'] is None
    assert all(positive(kde[k]) for k in KDE_KEYS), {k: kde[k] for k in KDE_KEYS}


def check_markdown(out: str) -> None:
    """results.md has the deep table (a row as wide as its header) and the KDE row; the notes say
    how to get the torch columns; scaling.png is written."""
    with open(os.path.join(out, 'results.md')) as f:
        md = f.read()
    lines = [line for line in md.splitlines() if line.startswith('|')]
    header = next(line for line in lines if 'step ms median' in line)
    rows = [line for line in lines if line.startswith('| vae_mnist |')]
    assert len(rows) == 1 and rows[0].count('|') == header.count('|')
    assert any(line.startswith('| 500 x 500 |') for line in lines)
    assert torch_ref.INSTALL in md
    assert os.path.getsize(os.path.join(out, 'scaling.png')) > 0


def check_compare(out: str, results: dict, tmp_path) -> None:
    """--compare of the run with a copy whose step is twice as slow: ratio 2 on that row."""
    slower = json.loads(json.dumps(results))
    slower['records'][0]['step_ms_median'] *= 2
    os.makedirs(tmp_path / 'b')
    with open(tmp_path / 'b' / 'results.json', 'w') as f:
        json.dump(slower, f)
    text = run.main(['--compare', out, str(tmp_path / 'b'), '--out', str(tmp_path / 'cmp')])
    rows = [line for line in text['compare'].splitlines()
            if line.startswith('| vae_mnist | 8 | step_ms_median |')]
    assert len(rows) == 1 and rows[0].endswith('| 2 |')
    assert '| kde | - | score_seconds |' in text['compare']
    assert os.path.exists(tmp_path / 'cmp' / 'compare.md')


@pytest.mark.parametrize('argv, message', [
    (['--batch_sizes', '32,x'], '--batch_sizes'),
    (['--configs', 'vae_mnistt'], 'is not a config'),
    (['--configs', 'gmm_digits'], 'classical rows are em, kde'),
    (['--resume'], 'give --out DIR'),
    (['--max_step_seconds', '0'], 'must be positive'),
    (['--configs', 'vae_mnist', '--samplers', 'ddim10'], 'no samplers by name'),
    (['--configs', 'ddpm_mnist', '--samplers', 'ddim10,ddlm10'], "--samplers.*'ddlm10'"),
    (['--configs', 'fm_mnist', '--samplers', 'euler10,ddim10'], "--samplers.*'ddim10'"),
])
def test_bad_flags_fail_in_one_line(argv, message):
    with pytest.raises(SystemExit, match=message) as e:
        run.main(argv + ['--no_torch'])
    assert '\n' not in str(e.value)


def test_max_step_seconds_skips_batch_sizes_predicted_too_slow():
    measured = {32: 0.1, 128: 0.5}  # seconds per step
    assert run.too_slow(measured, 512, None) is None
    assert run.too_slow(measured, 512, 2.5) is None  # 0.5 * 4 = 2 s
    why = run.too_slow(measured, 2048, 2.5)  # 0.5 * 16 = 8 s, from the largest batch below
    assert 'about 8 s' in why and 'batch 128' in why and '--max_step_seconds 2.5' in why
    assert run.too_slow(measured, 16, 0.01) is None  # nothing measured below it


def test_samplers_flag_replaces_each_configs_eval_samplers(monkeypatch):
    seen = []

    def fake_measure(config, batch_size, settings, sampled=None):
        seen.append((config.model.architecture, tuple(config.eval.samplers)))
        raise run.deep.Skipped('fake')

    monkeypatch.setattr(run.deep, 'measure', fake_measure)
    run.main(['--configs', 'ddpm_mnist,fm_mnist', '--no_torch', '--batch_sizes', '8',
              '--samplers', 'heun10'])
    assert seen == [('unet', ('heun10',)), ('unet', ('heun10',))]


def test_sweep_reuses_sampler_rates_skips_slow_batches_and_resumes(tmp_path, monkeypatch):
    """The sweep's bookkeeping, with deep.measure replaced by a fake whose step takes 10 ms per
    example: sampler rates are timed at the first batch size only, a batch size predicted over
    --max_step_seconds is skipped, and --resume measures only what is missing."""
    calls = []

    def fake_measure(config, batch_size, settings, sampled=None):
        calls.append((batch_size, sampled))
        rates = sampled or (batch_size, {'sample': 100.0})
        run_keys = ('batch_size', 'num_devices', 'threads')  # run.run adds these
        record = {k: 1.0 for k in DEEP_KEYS if k not in TEXT_KEYS + run_keys}
        record |= {'step_ms_median': 10.0 * batch_size, 'step_ms_p10': 10.0 * batch_size,
                   'step_ms_p90': 10.0 * batch_size, 'sample_rates_batch_size': rates[0],
                   'sample_images_per_second': rates[1], 'torch_note': 'off',
                   'torch_check': None, 'peak_source': 'fake', 'peak_memory_source': 'fake',
                   'loop_log_every': 20}
        return record

    monkeypatch.setattr(run.deep, 'measure', fake_measure)
    out = str(tmp_path / 'sweep')
    argv = ['--configs', 'vae_mnist', '--no_torch', '--out', out, '--max_step_seconds', '0.5']
    results = run.main(argv + ['--batch_sizes', '8,16,64'])
    assert calls == [(8, None), (16, (8, {'sample': 100.0}))]
    assert [s['batch_size'] for s in results['skipped']] == [64]  # 0.16 s x 4 > 0.5 s
    with open(os.path.join(out, 'results.md')) as f:
        md = f.read()
    assert 'as at batch 8' in md and 'over --max_step_seconds 0.5' in md
    calls.clear()
    results = run.main(argv + ['--batch_sizes', '8,16,32,64', '--resume'])
    assert calls == [(32, (8, {'sample': 100.0}))]  # 64: 0.32 s x 2 > 0.5 s, skipped again
    assert [r['batch_size'] for r in results['records']] == [8, 16, 32]
    assert [s['batch_size'] for s in results['skipped']] == [64]
