"""Experiments: one module per `deepnotes run NAME`, each registering itself."""
