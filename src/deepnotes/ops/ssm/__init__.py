"""State-space model operators: HiPPO matrices and discretisations, S4/S4D kernels, and the
Mamba selective scan (sequential reference `naive_selective_scan`, chunked parallel
`torch_selective_scan`, public dispatcher `selective_scan`)."""

from deepnotes.ops.ssm.naive import naive_selective_scan
from deepnotes.ops.ssm.scan import selective_scan, torch_selective_scan

__all__ = ["naive_selective_scan", "selective_scan", "torch_selective_scan"]
