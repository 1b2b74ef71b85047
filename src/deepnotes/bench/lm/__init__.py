"""Language-model benchmarks: the arena with kernels, MFU, training machinery, checkpointing."""
