"""Diffusion and score-model experiments."""
