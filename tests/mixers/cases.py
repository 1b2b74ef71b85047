"""Per-mixer keyword arguments for the test battery (small, fast settings).

A mixer missing here is tested with its defaults. `causal_modes` lists which of
causal=True/False it supports (read from the class, not from here).
"""

# name -> kwargs for build(name, d_model, causal=..., **kwargs) at test sizes
KWARGS: dict[str, dict] = {
    "softmax": {"n_heads": 4},
    # SSMs: a small state, and chunks shorter than the test lengths (T = 37, 63, 70, 128)
    # so that the state passing between chunks is exercised.
    "s4d": {"d_state": 8, "chunk_size": 16},
    "s4": {"d_state": 8, "chunk_size": 16},
    "mamba": {"d_state": 4},
    "linear": {"n_heads": 4, "chunk_size": 16},
    "performer": {"n_heads": 4, "n_features": 24, "chunk_size": 16},
    "linformer": {"n_heads": 4, "max_len": 128, "k": 16},
    "sliding_window": {"n_heads": 4, "window": 8},
    "strided_sparse": {"n_heads": 4, "stride": 8, "query_block": 16},
    # gamma_init_std = 1: the paper's 0.02 makes relu^2 scores ~1e-7 at init, too weak a test
    "gau_quad": {"qk_dim": 24, "gamma_init_std": 1.0},
    "gau_flash": {"qk_dim": 24, "chunk_size": 16, "gamma_init_std": 1.0},
}

# name -> kwargs overriding KWARGS for gradcheck (tiny sizes)
GRADCHECK_KWARGS: dict[str, dict] = {
    "s4d": {"d_state": 2, "chunk_size": 4},
    "s4": {"d_state": 2, "chunk_size": 4},
    "mamba": {"d_state": 2, "expand": 1},
    "strided_sparse": {"stride": 4, "query_block": 64},  # one query block: no recompute loop
    "performer": {"n_features": 8},
    "gau_quad": {"qk_dim": 8},
    "gau_flash": {"qk_dim": 8, "chunk_size": 4},
}
