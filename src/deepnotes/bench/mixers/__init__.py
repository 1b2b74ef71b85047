"""Sequence-mixer benchmarks: every mixer's scaling, and the Triton kernels against their peers."""
