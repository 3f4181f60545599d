"""Attention backends: which kernel runs where, PyTorch's default dispatch, and the
parameters the cost model prices each with (:mod:`shapewise.cost.attention` holds the
kernel model; docs/cost-model.md §2 the table of backends and their sources)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shapewise.cost.defaults import (
    ATTENTION_BACKEND_SHARED,
    ATTENTION_PRIORS,
    calibration_of,
)
from shapewise.cost.gemm import _resolve
from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU

# --------------------------------------------------------------------------- backends


@dataclass(frozen=True, slots=True)
class AttentionBackend:
    """One attention kernel family: where it runs and which shapes it takes."""

    name: str
    """the id users pass (``--attention-backend``)"""
    label: str
    vendor: Literal["nvidia", "amd", "any"]
    min_sm: int = 0
    """lowest NVIDIA compute capability ×10 (80 = sm_80); 0 for AMD / any"""
    max_sm: int = 10_000
    archs: tuple[str, ...] = ()
    """AMD architecture families it runs on (cdna2, cdna3); empty: any of the vendor"""
    dtypes: tuple[str, ...] = ("fp16", "bf16")
    fp8_backward: bool = False
    """whether an fp8 backward exists (FA3 and cuDNN on Hopper/Blackwell forward only...)"""
    max_head_dim: int = 256
    head_dim_multiple: int = 8
    separate_v_dim: bool = False
    """whether V's head dim may differ from Q/K's (MLA: 192/128)"""
    fused: bool = True
    mma: Literal["native", "legacy"] = "native"
    """'legacy': written for Ampere's mma.sync, so its rate does not grow with Hopper's
    wgmma or Blackwell's tcgen05 tensor cores (see defaults.LEGACY_MMA_FLOP_PER_CLOCK)"""
    head_dim_buckets: tuple[int, ...] = ()
    """compiled head-dim sizes (a head dim runs the next one up); empty: any multiple"""
    tiles: Literal["profile", "fa2"] = "profile"
    """forward (BlockM, BlockN): the profile's ``attention_tiles`` (FA3-class kernels on
    Hopper/Blackwell, FA2's on Ampere/Ada), or FA2's sm80 table on every GPU"""
    source: str = ""

    def runs_on(self, gpu: GPU) -> bool:
        if self.vendor != "any" and gpu.vendor != self.vendor:
            return False
        if gpu.vendor == "amd":
            return not self.archs or gpu.arch.lower() in self.archs
        if gpu.vendor == "nvidia":
            return self.min_sm <= sm_version(gpu) <= self.max_sm
        return self.vendor == "any" and self.min_sm == 0


_FA2_BUCKETS = (32, 64, 96, 128, 160, 192, 224, 256)
_FA3_BUCKETS = (64, 96, 128, 192, 256)

BACKENDS: dict[str, AttentionBackend] = {b.name: b for b in (
    AttentionBackend(
        "fa2", "flash-attn 2 (flash_attn_func)", "nvidia", min_sm=80, mma="legacy",
        head_dim_buckets=_FA2_BUCKETS, tiles="fa2",
        source="Dao-AILab/flash-attention README: Ampere, Ada or Hopper GPUs (it also runs "
        "on Blackwell as sm80 code: cudnn_frontend_sdpa.csv), fp16/bf16, head dims up to 256, "
        "q, k, v of one head dim; compiled sizes: csrc/flash_attn/src/flash_*_hdim*.cu"),
    AttentionBackend(
        "fa3", "FlashAttention-3 (flash_attn_interface)", "nvidia", min_sm=90, max_sm=90,
        dtypes=("fp16", "bf16", "fp8"), separate_v_dim=True, head_dim_buckets=_FA3_BUCKETS,
        source="Dao-AILab/flash-attention README 'FlashAttention-3': H100/H800 (Hopper) "
        "only, FP16/BF16 forward and backward, FP8 forward; head dims 64-256 "
        "(hopper/tile_size.h); hdim_qk 192 with hdim_v 128 (DeepSeek MLA)"),
    AttentionBackend(
        "fa4", "FlashAttention-4 (flash_attn.cute)", "nvidia", min_sm=90, max_sm=103,
        separate_v_dim=True, head_dim_buckets=_FA3_BUCKETS,
        source="flash-attn-4 on PyPI: 'a CuTeDSL-based implementation of FlashAttention "
        "for Hopper and Blackwell GPUs' (sm90, sm100/sm103); hdim_qk 192 / hdim_v 128 "
        "measured in Dao-AILab/flash-attention PR #2270"),
    AttentionBackend(
        "cudnn", "cuDNN SDPA (PyTorch CUDNN_ATTENTION, cudnn-frontend, TransformerEngine)",
        "nvidia", min_sm=80, max_sm=121, dtypes=("fp16", "bf16", "fp8"), fp8_backward=True,
        max_head_dim=256, separate_v_dim=True,
        source="pytorch/pytorch@001f694 sdp_utils.cpp check_cudnn_hardware_support "
        "(sm80-sm121) and check_cudnn_tensor_shapes: head dim a multiple of 8, at most 128, "
        "or 256 on sm90/sm10x with cuDNN > 9.22 (192/128 from 9.11); fp8 SDPA: "
        "NVIDIA cudnn-frontend benchmarks (sm90+)"),
    AttentionBackend(
        "sdpa-flash", "PyTorch SDPA FLASH_ATTENTION (bundled FlashAttention-2)", "nvidia",
        min_sm=80, max_sm=121, mma="legacy", head_dim_buckets=_FA2_BUCKETS, tiles="fa2",
        source="pytorch/pytorch@001f694 sdp_utils.cpp can_use_flash_attention: sm80-sm121, "
        "fp16/bf16, q, k, v of one head dim <= 256, causal only with seqlen_q == seqlen_k"),
    AttentionBackend(
        "sdpa-efficient", "PyTorch SDPA EFFICIENT_ATTENTION (xformers/CUTLASS)", "nvidia",
        min_sm=50, max_sm=121, dtypes=("fp16", "bf16", "fp32", "tf32"), max_head_dim=1 << 20,
        separate_v_dim=True, mma="legacy", tiles="fa2",
        source="pytorch/pytorch@001f694 sdp_utils.cpp can_use_mem_efficient_attention: "
        "sm50-sm121, fp16/fp32 (+bf16 on sm80+), head dims a multiple of 8 (16-bit) or 4, "
        "no upper limit, V's head dim may differ"),
    AttentionBackend(
        "sdpa-math", "PyTorch SDPA MATH (materialised scores)", "any",
        dtypes=("fp16", "bf16", "fp32", "tf32", "fp8"), fp8_backward=True,
        max_head_dim=1 << 20, head_dim_multiple=1, separate_v_dim=True, fused=False,
        source="pytorch/pytorch@001f694 sdp_utils.cpp select_sdp_backend: the math path "
        "takes every shape and dtype"),
    AttentionBackend(
        "triton", "Triton fused attention (tutorial 06 and its descendants)", "any",
        min_sm=80, archs=("cdna2", "cdna3"), head_dim_buckets=(16, 32, 64, 128, 256),
        head_dim_multiple=16, tiles="fa2",
        source="triton-lang/triton python/tutorials/06-fused-attention.py: "
        "HEAD_DIM in {16, 32, 64, 128, 256}, fp16 (fp8 on Hopper); NVIDIA sm80+ and AMD CDNA"),
    AttentionBackend(
        "ck", "ROCm flash-attention (Composable Kernel)", "amd", archs=("cdna2", "cdna3"),
        head_dim_buckets=(32, 64, 96, 128, 160, 192, 224, 256),
        source="ROCm/flash-attention README (CK backend): MI200/MI300 (gfx90a, gfx942), "
        "fp16/bf16, head dims up to 256"),
    AttentionBackend(
        "aotriton", "PyTorch SDPA on ROCm (AOTriton flash / efficient)", "amd",
        archs=("cdna2", "cdna3"), dtypes=("fp16", "bf16", "fp32"), max_head_dim=256,
        # Triton kernels tile the head dim with tl.arange, whose length must be a power of
        # two (Triton's language reference): a head dim of 80 runs the 128-wide kernel
        head_dim_buckets=(16, 32, 64, 128, 256),
        source="pytorch/pytorch@001f694 sdp_utils.cpp: ROCm flash and efficient attention "
        "run AOTriton; head dims <= 256 (512 from AOTriton 0.9), multiple of 8 for 16-bit, "
        "q, k, v of one head dim for the flash entry"),
)}

#: what users and configs call them -> backend ids
BACKEND_ALIASES = {
    "flash_attention_2": "fa2", "flash-attn": "fa2", "flash_attn": "fa2", "flash2": "fa2",
    "flash_attention_3": "fa3", "flash3": "fa3", "flash_attention_4": "fa4", "flash4": "fa4",
    "cudnn_attention": "cudnn", "cudnn-sdpa": "cudnn", "flash": "sdpa-flash",
    "flash_attention": "sdpa-flash", "efficient": "sdpa-efficient",
    "efficient_attention": "sdpa-efficient", "mem_efficient": "sdpa-efficient",
    "math": "sdpa-math", "eager": "sdpa-math",
}


def sm_version(gpu: GPU) -> int:
    """Compute capability ×10 of an NVIDIA profile (90 for 'sm_90'); 0 otherwise."""
    code = gpu.arch_code.lower()
    if gpu.vendor != "nvidia" or not code.startswith("sm_"):
        return 0
    digits = "".join(ch for ch in code[3:] if ch.isdigit())
    return int(digits) if digits else 0


def backend_names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def resolve_backend(name: str, *, field_name: str = "backend") -> AttentionBackend:
    """The backend called ``name`` (an id or a known alias), or InputError naming it."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{field_name}: must be a backend name, got {name!r}")
    key = name.strip().lower().replace("_", "-")
    key = BACKEND_ALIASES.get(name.strip().lower(), BACKEND_ALIASES.get(key, key))
    if key not in BACKENDS:
        raise InputError(f"{field_name}: unknown attention backend {name!r}; known: "
                         f"{', '.join(BACKENDS)}")
    return BACKENDS[key]


def unsupported_reason(backend: AttentionBackend, gpu: GPU, *, dtype: str, head_dim: int,
                       head_dim_v: int | None = None, causal: bool = True,
                       seq_len: int | None = None, seq_len_kv: int | None = None,
                       backward: bool = False) -> str | None:
    """Why ``backend`` cannot run this attention on ``gpu`` (None: it can)."""
    dv = head_dim if head_dim_v is None else head_dim_v
    if not backend.runs_on(gpu):
        where = (f"{gpu.arch_code}" if gpu.vendor == "nvidia" else gpu.arch)
        return f"{backend.name} does not run on {gpu.name} ({where})"
    if dtype not in backend.dtypes:
        return f"{backend.name} has no {dtype} kernel (it takes {', '.join(backend.dtypes)})"
    if backward and dtype == "fp8" and not backend.fp8_backward:
        return f"{backend.name} has no fp8 backward"
    if backend.name == "fa3" and backward and dtype == "fp8":
        return "fa3 has no fp8 backward"
    if not backend.separate_v_dim and dv != head_dim:
        return (f"{backend.name} needs V's head dim equal to Q/K's "
                f"(got {head_dim} and {dv})")
    mult = backend.head_dim_multiple
    if dtype in ("fp32", "tf32") and backend.name == "sdpa-efficient":
        mult = 4
    for d, what in ((head_dim, "head dim"), (dv, "V head dim")):
        if d % mult:
            return f"{backend.name} needs the {what} to be a multiple of {mult} (got {d})"
        if d > backend.max_head_dim:
            return f"{backend.name} takes head dims up to {backend.max_head_dim} (got {d})"
        if backend.head_dim_buckets and d > max(backend.head_dim_buckets):
            return (f"{backend.name} takes head dims up to {max(backend.head_dim_buckets)} "
                    f"(got {d})")
    sm = sm_version(gpu)
    if backend.name == "cudnn":
        big = sm in (90, 100, 103)
        if not big and max(head_dim, dv) > 128:
            return f"cudnn takes head dims up to 128 on {gpu.arch_code} (got {max(head_dim, dv)})"
        if backward and not (max(head_dim, dv) <= 128 or (head_dim, dv) in ((192, 128),
                                                                           (256, 256))):
            return (f"cudnn has no backward for head dims {head_dim}/{dv} (it takes <= 128, "
                    "192/128 or 256/256)")
    if backend.name in ("fa2", "sdpa-flash") and backward and sm in (86, 89, 120, 121) \
            and 192 < head_dim <= 224:
        return f"{backend.name} has no backward for head dims in (192, 224] on {gpu.arch_code}"
    if (backend.name == "sdpa-flash" and causal and seq_len is not None
            and seq_len_kv is not None and seq_len != seq_len_kv):
        return "sdpa-flash takes a causal mask only when seq_len == seq_len_kv"
    return None


def check_backend(backend: str | AttentionBackend, gpu: str | GPU, *, dtype: str = "bf16",
                  head_dim: int, head_dim_v: int | None = None, causal: bool = True,
                  seq_len: int | None = None, seq_len_kv: int | None = None,
                  backward: bool = False) -> AttentionBackend:
    """The backend if it can run this attention on ``gpu``; else InputError naming it."""
    b = backend if isinstance(backend, AttentionBackend) else resolve_backend(backend)
    g, dt = _resolve(gpu, dtype)
    why = unsupported_reason(b, g, dtype=dt, head_dim=head_dim, head_dim_v=head_dim_v,
                             causal=causal, seq_len=seq_len, seq_len_kv=seq_len_kv,
                             backward=backward)
    if why is not None:
        raise InputError(f"backend: {why}")
    return b


def available_backends(gpu: str | GPU, *, dtype: str = "bf16", head_dim: int = 128,
                       head_dim_v: int | None = None, causal: bool = True,
                       seq_len: int | None = None, seq_len_kv: int | None = None,
                       training: bool = True) -> tuple[str, ...]:
    """Backends that can run this attention on ``gpu`` (forward, and backward if training)."""
    g, dt = _resolve(gpu, dtype)
    out = []
    for b in BACKENDS.values():
        if any(unsupported_reason(b, g, dtype=dt, head_dim=head_dim, head_dim_v=head_dim_v,
                                  causal=causal, seq_len=seq_len, seq_len_kv=seq_len_kv,
                                  backward=bw) for bw in ((False, True) if training
                                                          else (False,))):
            continue
        out.append(b.name)
    return tuple(out)


def dispatch_order(gpu: GPU) -> tuple[str, ...]:
    """PyTorch SDPA's priority order on ``gpu`` (pytorch/pytorch@001f694, sdp_utils.cpp).

    * ``priority_order``: cuDNN first when ``check_prefer_cudnn_attention`` holds (compute
      capability 9.x or 10.x with cuDNN newer than 9.15), else the default order flash,
      efficient, math, cuDNN. Older PyTorch releases put flash first everywhere.
    * On ROCm the flash and efficient entries run AOTriton (or CK when selected with
      ``torch.backends.cuda.preferred_rocm_fa_library``).
    """
    if gpu.vendor == "amd":
        return ("aotriton", "sdpa-math")
    sm = sm_version(gpu)
    if sm // 10 in (9, 10):
        return ("cudnn", "sdpa-flash", "sdpa-efficient", "sdpa-math")
    return ("sdpa-flash", "sdpa-efficient", "sdpa-math", "cudnn")


def default_backend(gpu: str | GPU, *, dtype: str = "bf16", head_dim: int = 128,
                    head_dim_v: int | None = None, causal: bool = True,
                    seq_len: int | None = None, seq_len_kv: int | None = None,
                    training: bool = True) -> str:
    """The backend PyTorch's ``scaled_dot_product_attention`` picks for this call.

    The first backend of :func:`dispatch_order` whose checks pass, for the forward and,
    when ``training`` (inputs that require grad: the checks then include the backward's
    head-dim rules, as ``check_cudnn_d256_bprop_head_dim`` does), the backward. fp8 is not
    an SDPA dtype: fp8 attention runs cuDNN's fp8 kernels (TransformerEngine) where they
    exist, else the model prices the bf16 dispatch.
    """
    g, dt = _resolve(gpu, dtype)
    order = dispatch_order(g)
    if dt == "fp8":
        order = ("cudnn", *order)
    for name in order:
        b = BACKENDS[name]
        if not any(unsupported_reason(b, g, dtype=dt, head_dim=head_dim,
                                      head_dim_v=head_dim_v, causal=causal, seq_len=seq_len,
                                      seq_len_kv=seq_len_kv, backward=bw)
                   for bw in ((False, True) if training else (False,))):
            return name
    return "sdpa-math"


# --------------------------------------------------------------------------- parameters


def _sibling_fit(gpu: GPU, backend: str, key: str | None = None
                 ) -> tuple[Mapping[str, float], str] | None:
    """A fit of ``backend`` on another profile with the same SM (arch_code), if any (one
    that holds ``key``, where given).

    Efficiency as a fraction of peak carries over between SKUs of one chip (H100 and H200
    share the GH100 SM; B200 and GB200 the GB100 SM): the kernel and its tiles are the same.
    """
    from shapewise.hardware.catalog import list_gpus

    for other in sorted(list_gpus(), key=lambda g: g.id):
        if other.id == gpu.id or other.arch_code != gpu.arch_code or other.calibration is None:
            continue
        fit = other.calibration.attention_backends.get(backend)
        if fit and (key is None or key in fit):
            return fit, f"fitted on {other.id} (same {gpu.arch_code} SM)"
    return None


def attention_backend_params(gpu: GPU, backend: str, dtype: str
                             ) -> tuple[dict[str, float], str]:
    """Parameters of ``backend`` on ``gpu`` for the fused-attention formula, and their origin.

    Keys: fwd_efficiency, bwd_efficiency (and _fp8 variants when fitted), softmax_exposed,
    cta_overhead, and bwd_quant_fp8 (the fp8 backward's quantisation work, κ₈) where fitted.
    Order: this GPU's fit; a fit on a GPU with the same SM; the priors.
    """
    cal = calibration_of(gpu)
    be = BACKENDS[backend]
    shared = {"softmax_exposed": ATTENTION_PRIORS["softmax_exposed"],
              "cta_overhead": ATTENTION_PRIORS["cta_overhead"],
              **ATTENTION_BACKEND_SHARED.get(backend, {})}
    fwd, bwd = cal.attention_fwd_efficiency, cal.attention_bwd_efficiency
    origin = "spec-derived prior (no fit of this backend on this SM)"
    if be.mma == "legacy" and gpu.vendor == "nvidia":
        peak = gpu.peak_flops(dtype if dtype in gpu.peak_tflops else "fp16")
        per_clock = gpu.sm_count * gpu.boost_clock_mhz * 1e6
        fwd = min(fwd, ATTENTION_PRIORS["legacy_fwd_flop_per_clock"] * per_clock / peak)
        bwd = min(bwd, ATTENTION_PRIORS["legacy_bwd_flop_per_clock"] * per_clock / peak)
        if backend == "sdpa-efficient":
            fwd *= ATTENTION_PRIORS["efficient_vs_fa2"]
            bwd *= ATTENTION_PRIORS["efficient_vs_fa2"]
        origin = "prior: FlashAttention-2-class rate per SM per clock (no fit on this SM)"
    prm = {**shared, "fwd_efficiency": fwd, "bwd_efficiency": bwd}
    # a fit (this GPU's, else one on the same SM) overrides what it measured; a direction
    # it did not measure keeps the prior
    own = cal.attention_backends.get(backend)
    if own:
        prm = {**prm, **own}
        if "bwd_quant_fp8" not in own:
            # the fp8 backward's quantisation work is the kernel's on that SM: a fit on a
            # sibling that measured it (B200 from GB200) prices this GPU's fp8 backward
            sib = _sibling_fit(gpu, backend, key="bwd_quant_fp8")
            if sib is not None:
                prm["bwd_quant_fp8"] = sib[0]["bwd_quant_fp8"]
        return prm, f"fitted on {gpu.id}'s chip (calibration.provenance.attention)"
    sib = _sibling_fit(gpu, backend)
    if sib is not None:
        return {**prm, **sib[0]}, sib[1]
    return prm, origin
