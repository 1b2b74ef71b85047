"""Per-mixer keyword arguments for the test battery (small, fast settings).

A mixer missing here is tested with its defaults. `causal_modes` lists which of
causal=True/False it supports (read from the class, not from here).
"""

# name -> kwargs for build(name, d_model, causal=..., **kwargs) at test sizes
KWARGS: dict[str, dict] = {
    "softmax": {"n_heads": 4},
    "linear": {"n_heads": 4, "chunk_size": 16},
    "performer": {"n_heads": 4, "n_features": 24, "chunk_size": 16},
}

# name -> kwargs overriding KWARGS for gradcheck (tiny sizes)
GRADCHECK_KWARGS: dict[str, dict] = {}
