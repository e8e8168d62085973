"""Benchmarks of the prediction API: ./scripts/bench runs bench/run.py (see bench/README.md)."""
