"""Video experiments: TSN vs TSM vs 3D, two-stream networks, OadTR online detection."""
