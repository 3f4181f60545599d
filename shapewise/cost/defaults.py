"""Cost-model parameters for GPUs that have no fitted calibration.

The numbers below are used when a profile carries no ``calibration`` block. Each says where
it comes from; ``shapewise report`` and ``explain_gemm`` say "spec-derived defaults" for
such GPUs so nobody mistakes them for a fit. ``scripts/fit_public.py`` refits the profiles
that have public measurements and prints how far these defaults sit from those fits.
"""

from __future__ import annotations

from shapewise.hardware.catalog import GPU, Calibration

#: Main-loop efficiency of a large tensor-core GEMM, as a fraction of the dense peak.
#: NVIDIA: 0.83, the mean of the fitted tensor-core efficiencies of A100, H100 and V100
#: (``python scripts/fit_public.py`` prints it); it agrees with stas00/ml-engineering's
#: "Maximum Achievable Matmul FLOPS" tables (A100 SXM 86.9%, H100 SXM 80.3%, GH200 83.6%;
#: via shared/reference/gpu_specs.md). AMD CDNA3: 0.55, the middle of MI300X's MAMF range
#: (51.4-60.1%); other AMD: 0.77 (MI250X GCD MAMF 76.7%).
DEFAULT_TENSOR_EFFICIENCY = {
    "nvidia": 0.83, "amd-cdna3": 0.55, "amd": 0.77, "cpu": 0.7, "other": 0.7,
}

#: Shared terms: the medians over the GPUs whose tensor-core kernels were fitted on public
#: kernel timings (A100, H100, MI300X, V100; ``scripts/fit_public.py`` prints them).
DEFAULT_CALIBRATION_VALUES = {
    # fixed time of one kernel as a kernel timer sees it (fitted 4.0-5.9 us)
    "launch_us": 4.9,
    # pipeline fill/drain of a CTA tile in K elements (fits put it near zero: the launch
    # term absorbs most fixed costs)
    "k_fill": 9.0,
    # fraction of the datasheet bandwidth a streaming GEMM operand read sustains
    "bandwidth_efficiency": 0.82,
    # co-design.md, rule 6: H100 fp16, K=10922 (not a multiple of 16 bytes) ran at
    # 272.7 TFLOP/s against 398.4 for K=10944: a factor of 0.685. (Kept where the data
    # has too few misaligned shapes to fit it.)
    "misalign_16b_factor": 0.685,
    # 16-byte but not 128-byte aligned: 398.4 (K=10944, 128-byte aligned) against 395.0
    # (K=11008) shows aligned sizes agree within 1%; the A100/H100 fits find ~1.0 for
    # 16-byte-only alignment; 0.95 is kept as a mild prior where nothing was fitted.
    "misalign_coarse_factor": 0.95,
    # operand-reuse cost of small tiles (docs/cost-model.md, tile efficiency)
    "tile_reuse_cost": 0.44,
    # compute and memory traffic overlap imperfectly: 20% of the shorter adds to the longer
    "overlap_penalty": 0.20,
    # FlashAttention-2 paper (Dao 2023, arXiv 2307.08691): forward up to 73% of A100 peak,
    # backward up to 63%; FlashAttention-3 (Shah et al. 2024, arXiv 2407.08608): 740 TFLOP/s
    # bf16 forward on H100 = 75%. Attention efficiency is taken relative to the GEMM
    # main-loop efficiency: 0.73/0.87 and 0.63/0.87 of the A100 GEMM ceiling.
    "attention_fwd_rel": 0.84,
    "attention_bwd_rel": 0.72,
}


def _tensor_efficiency(gpu: GPU) -> float:
    if gpu.vendor == "amd":
        key = "amd-cdna3" if gpu.arch.lower() in ("cdna3", "cdna4") else "amd"
        return DEFAULT_TENSOR_EFFICIENCY[key]
    return DEFAULT_TENSOR_EFFICIENCY.get(gpu.vendor, 0.7)


def default_calibration(gpu: GPU) -> Calibration:
    """Spec-derived defaults for ``gpu`` (no measurement of this GPU behind them)."""
    eff = _tensor_efficiency(gpu)
    v = DEFAULT_CALIBRATION_VALUES
    return Calibration(
        status="default",
        gemm_efficiency={"bf16": eff},
        launch_us=v["launch_us"],
        k_fill=v["k_fill"],
        bandwidth_efficiency=v["bandwidth_efficiency"],
        misalign_16b_factor=v["misalign_16b_factor"],
        misalign_coarse_factor=v["misalign_coarse_factor"],
        tile_reuse_cost=v["tile_reuse_cost"],
        overlap_penalty=v["overlap_penalty"],
        attention_fwd_efficiency=min(1.0, eff * v["attention_fwd_rel"]),
        attention_bwd_efficiency=min(1.0, eff * v["attention_bwd_rel"]),
        provenance={
            "source": "spec-derived defaults (shapewise/cost/defaults.py); no measurement "
            "of this GPU was fitted",
        },
    )


def calibration_of(gpu: GPU) -> Calibration:
    """The GPU's fitted calibration, or the defaults when it has none."""
    return gpu.calibration if gpu.calibration is not None else default_calibration(gpu)
