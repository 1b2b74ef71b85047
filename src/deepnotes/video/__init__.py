"""Video pieces: temporal shift, optical flow, FLOP counting and per-frame detection metrics."""

from deepnotes.video.flops import Counts, count, count_params
from deepnotes.video.metrics import average_precision, per_frame_map
from deepnotes.video.shift import (
    OnlineTemporalShift,
    TemporalShift,
    inplace_temporal_shift,
    temporal_shift,
    uni_temporal_shift,
)

__all__ = [
    "Counts",
    "OnlineTemporalShift",
    "TemporalShift",
    "average_precision",
    "count",
    "count_params",
    "inplace_temporal_shift",
    "per_frame_map",
    "temporal_shift",
    "uni_temporal_shift",
]
