"""Language-model experiments: the mixer arena, attention scaling, activations, MoE."""
