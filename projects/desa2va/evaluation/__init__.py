"""Evaluation: metrics (exact toolkit conventions), per-benchmark scripts, distributed sharding."""
