"""Offline corpora and synthetic task generators."""
