"""Latent diffusion models: the VAE, the conditional UNet and the condition encoder."""
