"""Vision experiments: receptive fields, upsampling, Swin, DETR."""
