"""Benchmark suites: one module per `deepnotes bench SUITE`, each registering itself."""
