"""Datasets: readers of every training/evaluation format, one conversation template, mixing, synthetic data."""
