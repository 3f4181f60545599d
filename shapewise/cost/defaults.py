"""Cost-model parameters for GPUs that have no fitted calibration.

The numbers below are used when a profile carries no ``calibration`` block. Each says where
it comes from; ``shapewise report`` and ``explain_gemm`` say "spec-derived defaults" for
such GPUs so nobody mistakes them for a fit. ``scripts/fit_public.py`` refits the profiles
that have public measurements and prints how far these defaults sit from those fits.
"""

from __future__ import annotations

import dataclasses

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
    # The attention prior of GPUs and backends without a fit of their own (FA3/cuDNN-class
    # kernels), relative to the GEMM main-loop efficiency: the means of the cuDNN fits on
    # H100/H200, B200 and GB200 (scripts/fit_public.py; forward 0.82, 0.77, 1.00 and
    # backward 0.57, 0.51, 0.60 of peak against a GEMM efficiency of 0.83). The forward's MMAs run
    # near the GEMM rate once the exposed softmax and per-CTA work are priced separately
    # (cost/attention.py); the backward's five products, dQ atomics and recompute run lower.
    "attention_fwd_rel": 1.0,
    "attention_bwd_rel": 0.68,
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
    """The GPU's fitted calibration, or the defaults when it has none.

    A profile whose block says ``status: default`` but carries fitted attention backends
    (a GPU with public attention timings and no GEMM timings) gets today's GEMM defaults
    with those attention fits.
    """
    cal = gpu.calibration
    if cal is None:
        return default_calibration(gpu)
    if cal.status == "default":
        base = default_calibration(gpu)
        return dataclasses.replace(base, attention_backends=cal.attention_backends,
                                   provenance={**base.provenance, **cal.provenance})
    return cal


#: Attention priors: what a (GPU, backend) without a fit of its own is priced with.
#: Fitted on the public attention timings by ``scripts/fit_public.py`` (it prints these
#: cross-GPU figures); each is a physical quantity, not a per-file factor.
ATTENTION_PRIORS = {
    # FlashAttention-2-class kernels (mma.sync, written for Ampere) sustain about the same
    # MMA work per SM per clock on H100/H200, B200 and GB200 however fast the newer tensor
    # cores are: PyTorch's bundled FA2 fitted 1496, 1574, 1624 FLOP/clock/SM forward and
    # 1249, 1200, 1253 backward (fit_public.py prints them); A100's whole peak is 2048
    "legacy_fwd_flop_per_clock": 1560.0,
    "legacy_bwd_flop_per_clock": 1230.0,
    # share of the softmax exponentials not hidden behind the MMAs, and the fixed work per
    # CTA in block pairs, for backends without a fit: the cuDNN fit (the native class with
    # the most timings, 334, over head dims 64-256); FA2-class backends take sdpa-flash's
    "softmax_exposed": 0.31,
    "cta_overhead": 4.6,
    # PyTorch's EFFICIENT_ATTENTION (xformers' CUTLASS kernel) against FlashAttention-2: the
    # FlashAttention-2 paper (Dao 2023, arXiv 2307.08691) reports about 2x over
    # FlashAttention-1, whose speed xformers' kernel matches in its figures
    "efficient_vs_fa2": 0.5,
}

#: backend-wide fitted values (softmax_exposed κ, cta_overhead c₀) used where a GPU has no
#: fit of that backend; scripts/fit_public.py prints them ("shared ..."). A GPU with a fit
#: carries its own copy in its profile. FA2-class kernels share the sdpa-flash values.
ATTENTION_BACKEND_SHARED: dict[str, dict[str, float]] = {
    # sdpa-flash's timings are all head dim 128: κ stays at the fit's start (0.5), c₀ fitted
    "sdpa-flash": {"softmax_exposed": 0.5, "cta_overhead": 6.0},
    "fa2": {"softmax_exposed": 0.5, "cta_overhead": 6.0},
    "sdpa-efficient": {"softmax_exposed": 0.5, "cta_overhead": 6.0},
}
