"""Video models: TSN / TSM / R3D / R(2+1)D, two-stream, OadTR and a GRU (TRN-style) baseline."""

from deepnotes.models.video.resnet import (
    VideoResNet,
    VideoResNetConfig,
    r3d_18,
    small,
    tsm_resnet50,
)

__all__ = ["VideoResNet", "VideoResNetConfig", "r3d_18", "small", "tsm_resnet50"]
