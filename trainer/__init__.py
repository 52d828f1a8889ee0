"""Datasets, training, evaluation and benchmarks."""
