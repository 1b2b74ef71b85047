"""Vision-language models: Kimi-VL (MoonViT encoder, pixel-shuffle projector, MoE LM)."""

from deepnotes.models.vlm.kimi_vl import KimiVL, KimiVLConfig, SharedExpertMoE, answer_targets
from deepnotes.models.vlm.moonvit import MoonViT, MoonViTConfig
from deepnotes.models.vlm.projector import Projector, pixel_shuffle_merge

__all__ = [
    "KimiVL",
    "KimiVLConfig",
    "MoonViT",
    "MoonViTConfig",
    "Projector",
    "SharedExpertMoE",
    "answer_targets",
    "pixel_shuffle_merge",
]
