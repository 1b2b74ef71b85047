"""Video models: TSN / TSM / R3D / R(2+1)D, two-stream, OadTR and a GRU (TRN-style) baseline."""

from deepnotes.models.video.frames import FrameEncoder
from deepnotes.models.video.oadtr import (
    GRUDetector,
    GRUDetectorConfig,
    OadTR,
    OadTRConfig,
    OadTRStream,
)
from deepnotes.models.video.resnet import (
    VideoResNet,
    VideoResNetConfig,
    r3d_18,
    small,
    tsm_resnet50,
)
from deepnotes.models.video.two_stream import LateFusion, average_fusion, stack_flow, stream

__all__ = [
    "FrameEncoder",
    "GRUDetector",
    "GRUDetectorConfig",
    "LateFusion",
    "OadTR",
    "OadTRConfig",
    "OadTRStream",
    "VideoResNet",
    "VideoResNetConfig",
    "average_fusion",
    "r3d_18",
    "small",
    "stack_flow",
    "stream",
    "tsm_resnet50",
]
