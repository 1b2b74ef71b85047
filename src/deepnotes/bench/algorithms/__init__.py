"""Algorithm benchmarks: maximum gap."""
