"""The profiler split: kernel names sorted into families, and a CPU step's time by family."""

import pytest
import torch

from deepnotes.utils.profile import kernel_kind, profile_steps


@pytest.mark.parametrize(
    "name, kind",
    [
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_warpgroup", "matmul"),
        ("cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_32x32_128x2_tn_align8", "matmul"),
        ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "matmul"),  # cuBLAS, CUDA 13
        ("aten::addmm", "matmul"),
        ("cudnn_generated_fort_native_sdpa_sm90_knob_7_64x128x64_4x1x1_kernel0_0", "attention"),
        ("void pytorch_flash::flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel<K>", "attention"),
        ("flash_attn_bwd_dkdv_kernel", "attention"),
        (
            "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdam>",
            "optimizer",
        ),
        ("triton_red_fused__log_softmax_backward_data_nll_loss_backward_0", "loss"),
        ("triton_per_fused_native_layer_norm_backward_3", "norm"),
        ("triton_poi_fused_gelu_gelu_backward_7", "elementwise"),
        ("Memcpy HtoD (Pageable -> Device)", "copy"),
    ],
)
def test_kernel_names_fall_in_their_family(name, kind):
    assert kernel_kind(name) == kind


def test_a_cpu_step_splits_by_family(seed):
    """Two matmuls and a softmax a step on the CPU: matmul time is there, families add up to
    the total, and steps divide it."""
    a, b = torch.randn(256, 256), torch.randn(256, 256)

    def run() -> int:
        for _ in range(3):
            torch.log_softmax(a @ b @ b, dim=-1)
        return 3

    p = profile_steps(torch.device("cpu"), run, top=5)
    assert p["steps"] == 3 and len(p["ops"]) <= 5
    assert p["by_kind"]["matmul"] > 0 and "loss" in p["by_kind"]
    assert sum(p["by_kind"].values()) == pytest.approx(p["cpu_ms_per_step"], rel=1e-3, abs=1e-3)
    assert list(p["by_kind"].values()) == sorted(p["by_kind"].values(), reverse=True)
