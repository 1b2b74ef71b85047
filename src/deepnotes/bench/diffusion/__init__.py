"""Benchmark suites for the diffusion models."""
