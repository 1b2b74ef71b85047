"""Large-model experiments."""
