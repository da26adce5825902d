"""Benchmarks: `python -m bench <name> [options]` prints a table; figures go to bench/RESULTS.md by hand."""
