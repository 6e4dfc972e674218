"""Benchmarks for salara (run from the repository root, e.g. ``python -m bench.ingest``)."""
