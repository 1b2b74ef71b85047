"""Benchmarks of large-model decoding."""
