"""Speed benchmarks: `python -m benchmarks.run` for the whole table (run.py), and the
single-purpose scripts it builds on (bench_*.py). Never timed inside the test suite:
tests/test_benchmarks_run.py checks that the harness runs and what it records, not how fast."""
