"""Public loaders: map a peer's state dict (transformers) onto our models' keys."""

from deepnotes.models.loaders.detr import (
    detr_config_from_transformers,
    detr_from_transformers,
    detr_state_dict_from_transformers,
)
from deepnotes.models.loaders.swin import (
    swin_config_from_transformers,
    swin_from_transformers,
    swin_state_dict_from_transformers,
)

__all__ = [
    "detr_config_from_transformers",
    "detr_from_transformers",
    "detr_state_dict_from_transformers",
    "swin_config_from_transformers",
    "swin_from_transformers",
    "swin_state_dict_from_transformers",
]
