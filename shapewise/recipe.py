"""Low-precision training recipes: which GEMMs run in fp8, how their inputs are scaled, and
what that costs beyond the GEMMs themselves.

An fp8 recipe keeps the model in bf16 (weights, gradients, the residual stream) and fp32
master weights, and runs the linear layers' GEMMs on fp8 tensor cores. Each GEMM input is
*quantized* first: a kernel reads the bf16 tensor, finds its scale (amax), and writes the
fp8 copies the forward and the two backward GEMMs need. Those kernels are memory-bound and
are priced as :class:`~shapewise.ops.MemoryBound` ops (``fp8_quantize``, ``fp8_amax``).

=======================  =========================  ============================================
recipe                   GPUs                       scaling (what sets each fp8 scale)
=======================  =========================  ============================================
``te-delayed``           Hopper, Ada, Blackwell     TransformerEngine per-tensor, from the amax
                                                    history of earlier steps (no extra pass)
``te-current``           Hopper, Ada, Blackwell     per-tensor from this tensor's own amax: one
                                                    more read of the bf16 tensor first
``mxfp8``                Blackwell                  OCP MX: one E8M0 scale per 32 elements along
                                                    K, applied by the tensor cores
``blockwise``            Hopper, Blackwell          DeepSeek-V3: 1×128 tiles of activations and
                                                    gradients, 128×128 blocks of weights
``mi300x``               MI300X, MI325X (CDNA3)     TransformerEngine (ROCm) delayed scaling,
                                                    e4m3fnuz / e5m2fnuz
``nvfp4``, ``mxfp4``     (refused)                  4-bit GEMMs are not priced yet
=======================  =========================  ============================================

What each quantization moves, per element of the tensor (bf16 in, fp8 out): read 2 bytes,
write the row-wise copy (1 byte) and the column-wise copy that the transposed backward GEMM
reads (1 byte): 4 bytes. Hopper's fp8 tensor cores take only K-major operands, and a block or
MX scale runs along K, so both orientations are written in every recipe. Current scaling
reads the tensor once more for its amax (+2 bytes). Block and MX scales add 1/32 (E8M0) or
4/128 (fp32) bytes per element per copy: at most 3% of those 4 bytes, left out. Per linear
layer and micro-batch three tensors are quantized: its input X (m·k), its weight W (k·n)
and, in the backward, the output gradient dY (m·n). TransformerEngine fuses the cast of a
norm's or activation's output into that kernel; these are priced as separate kernels, so the
overhead is an upper bound.

Which GEMMs stay in bf16: the logits (output layer) by default, since its softmax is where
fp8 loses accuracy (TransformerEngine and Megatron keep it in bf16); attention's two batched
GEMMs unless ``fp8_attention`` (cuDNN's fp8 attention, priced as the bf16 kernel divided by
:data:`FP8_ATTENTION_SPEEDUP`, fitted on cuDNN's paired fp8/bf16 timings).

Memory: the bf16 weights and fp32 masters stay; the fp8 row-wise and column-wise weight
copies (2 bytes per GEMM weight) are added, as TransformerEngine caches them across the
micro-batches of a step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU, get_gpu
from shapewise.ops import Gemm, MemoryBound

Scaling = Literal["delayed", "current", "mx", "block"]
LowDtype = Literal["fp8", "fp4"]

#: fp8 attention (cuDNN SDPA, per-tensor e4m3) over bf16 attention, time of the same problem:
#: the median over 108 forward and 178 backward pairs of cudnn_frontend_sdpa.csv (H200,
#: GB200, GB300; NVIDIA/cudnn-frontend benchmark tables at the commits in its source column;
#: quartiles 1.34-1.58 forward, 1.08-1.78 backward), by scripts/fit_fp8_attention.py. Not 2x:
#: the softmax and the fp8 casts of P and dO do not run on the tensor cores.
FP8_ATTENTION_SPEEDUP = {"forward": 1.48, "backward": 1.38}

#: bytes moved per element by one quantization (read bf16, write row- and column-wise fp8)
QUANTIZE_BYTES = 4
#: the extra read of the bf16 tensor that current scaling needs for its amax
AMAX_BYTES = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    """A low-precision GEMM recipe (use a preset: ``Recipe.te_delayed()``, ``get_recipe``)."""

    name: str
    """the preset's name ('te-delayed', 'mxfp8', ...)"""
    scaling: Scaling
    """'delayed' or 'current' per-tensor scaling, 'mx' (32-element blocks along K), or
    'block' (DeepSeek's 1×128 / 128×128 blocks)"""
    gemm_dtype: LowDtype = "fp8"
    """the tensor-core type of the linear layers' GEMMs"""
    block: int | None = None
    """elements per scale (MX: 32, DeepSeek: 128, NVFP4: 16); None: one scale per tensor"""
    formats: str = "e4m3 (forward), e5m2 (gradients)"
    """the fp8 encodings (MI300X: the fnuz variants)"""
    fp8_attention: bool = False
    """attention's QKᵀ and AV in fp8 too (cuDNN fp8 attention); default: bf16"""
    fp8_logits: bool = False
    """the output layer's GEMM in fp8 too; default: bf16 (TransformerEngine, Megatron)"""

    def __post_init__(self) -> None:
        if self.name not in _PRESETS:
            raise InputError(f"recipe: {self.name!r} is not a recipe; "
                             f"known: {', '.join(_PRESETS)}")
        for key in ("fp8_attention", "fp8_logits"):
            if not isinstance(getattr(self, key), bool):
                raise InputError(f"{key}: must be True or False, got {getattr(self, key)!r}")

    # ------------------------------------------------------------------ presets
    @classmethod
    def te_delayed(cls, **options: bool) -> Recipe:
        """TransformerEngine per-tensor delayed scaling (the Hopper default)."""
        return get_recipe("te-delayed", **options)

    @classmethod
    def te_current(cls, **options: bool) -> Recipe:
        """TransformerEngine per-tensor current scaling."""
        return get_recipe("te-current", **options)

    @classmethod
    def mxfp8(cls, **options: bool) -> Recipe:
        """Blackwell MXFP8: one E8M0 scale per 32 elements."""
        return get_recipe("mxfp8", **options)

    @classmethod
    def blockwise(cls, **options: bool) -> Recipe:
        """DeepSeek-V3's 1×128 activation and 128×128 weight blocks."""
        return get_recipe("blockwise", **options)

    @classmethod
    def mi300x(cls, **options: bool) -> Recipe:
        """MI300X fp8 (e4m3fnuz), TransformerEngine-ROCm delayed scaling."""
        return get_recipe("mi300x", **options)

    # ------------------------------------------------------------------ pricing
    @property
    def quantize_bytes(self) -> int:
        """Bytes moved per element to quantize one tensor (4, or 6 with current scaling)."""
        return QUANTIZE_BYTES + (AMAX_BYTES if self.scaling == "current" else 0)

    def quantize_ops(self, gemm: Gemm) -> list[tuple[str, MemoryBound]]:
        """The quantization kernels one linear GEMM needs per micro-batch, as
        ``(phase, op)``: X and W before the forward, dY before the backward."""
        m, n, k = gemm.m, gemm.n, gemm.k
        b = gemm.batch
        out = []
        for phase, numel in (("forward", b * m * k), ("forward", b * k * n),
                             ("backward", b * m * n)):
            out.append((phase, MemoryBound(op="fp8_quantize", numel=numel,
                                           bytes_per_element=self.quantize_bytes)))
        return out

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "scaling": self.scaling, "gemm_dtype": self.gemm_dtype,
                "block": self.block, "formats": self.formats,
                "fp8_attention": self.fp8_attention, "fp8_logits": self.fp8_logits}


# name -> (fields, which GPUs: (vendor, archs))
_PRESETS: dict[str, tuple[dict[str, object], tuple[str, tuple[str, ...]]]] = {
    "te-delayed": ({"scaling": "delayed"}, ("nvidia", ("hopper", "ada", "blackwell"))),
    "te-current": ({"scaling": "current"}, ("nvidia", ("hopper", "ada", "blackwell"))),
    "mxfp8": ({"scaling": "mx", "block": 32, "formats": "e4m3 (all tensors), E8M0 scales"},
              ("nvidia", ("blackwell",))),
    "blockwise": ({"scaling": "block", "block": 128, "formats": "e4m3 (all tensors), "
                   "fp32 scales"}, ("nvidia", ("hopper", "blackwell"))),
    "mi300x": ({"scaling": "delayed", "formats": "e4m3fnuz (forward), e5m2fnuz (gradients)"},
               ("amd", ("cdna3",))),
    "nvfp4": ({"scaling": "block", "gemm_dtype": "fp4", "block": 16,
               "formats": "e2m1, e4m3 scales per 16"}, ("nvidia", ("blackwell",))),
    "mxfp4": ({"scaling": "mx", "gemm_dtype": "fp4", "block": 32,
               "formats": "e2m1, E8M0 scales per 32"}, ("nvidia", ("blackwell",))),
}
RECIPES: tuple[str, ...] = tuple(_PRESETS)


def get_recipe(name: str | Recipe, **options: bool) -> Recipe:
    """The preset called ``name`` ('te-delayed', 'te-current', 'mxfp8', 'blockwise',
    'mi300x', 'nvfp4', 'mxfp4'), with ``fp8_attention`` / ``fp8_logits`` options."""
    if isinstance(name, Recipe):
        return replace(name, **options) if options else name
    if not isinstance(name, str) or name.lower() not in _PRESETS:
        raise InputError(f"recipe: {name!r} is not a recipe; known: {', '.join(_PRESETS)}")
    unknown = sorted(set(options) - {"fp8_attention", "fp8_logits"})
    if unknown:
        raise InputError(f"{unknown[0]}: not a recipe option (fp8_attention, fp8_logits)")
    key = name.lower()
    fields = dict(_PRESETS[key][0])
    return Recipe(name=key, **fields, **options)  # type: ignore[arg-type]


def check_recipe(recipe: str | Recipe, gpu: str | GPU) -> Recipe:
    """``recipe`` if ``gpu`` can run it, else InputError naming ``recipe`` (or ``dtype``)
    and saying which GPUs can."""
    r = get_recipe(recipe)
    g = get_gpu(gpu)
    vendor, archs = _PRESETS[r.name][1]
    if r.gemm_dtype == "fp4":
        if g.vendor == "nvidia" and g.arch in archs:
            raise InputError(f"recipe: {r.name} (fp4) GEMMs are not priced yet: the catalog "
                             f"has no fp4 peak for {g.name}")
        raise InputError(f"recipe: {r.name} needs fp4 tensor cores (Blackwell); {g.name} "
                         f"has none")
    if "fp8" not in g.peak_tflops:
        raise InputError(f"dtype: {g.name} has no fp8 tensor cores (fp8 training needs "
                         f"Hopper, Ada, Blackwell or MI300); recipe {r.name!r} cannot run")
    if g.vendor != vendor or g.arch not in archs:
        where = {"hopper": "Hopper", "ada": "Ada", "blackwell": "Blackwell",
                 "cdna3": "MI300X/MI325X (CDNA3)"}
        need = ", ".join(where.get(a, a) for a in archs)
        fits = [n for n, (f, (v, a)) in _PRESETS.items()
                if f.get("gemm_dtype", "fp8") == "fp8" and v == g.vendor and g.arch in a]
        hint = f" (it runs: {', '.join(fits)})" if fits else ""
        raise InputError(f"recipe: {r.name} runs on {need}, not on {g.name} "
                         f"({g.arch}){hint}")
    return r


def fp8_weight_bytes(shape: object, *, tp: int = 1, ep: int = 1,
                     recipe: str | Recipe = "te-delayed") -> int:
    """Bytes of the fp8 weight copies one GPU caches: a row-wise and a column-wise byte per
    element of every weight matrix whose GEMM runs in fp8 (the layers' linear weights; the
    output layer too with ``fp8_logits``). Routed experts are split over ``ep`` ranks."""
    from shapewise.model.params import param_tensors
    from shapewise.model.shape import ModelShape

    if not isinstance(shape, ModelShape):
        raise InputError(f"shape: expected a ModelShape, got {type(shape).__name__}")
    r = get_recipe(recipe)
    total = 0
    for p in param_tensors(shape):
        in_layers = p.matmul and p.category in ("attention", "mlp")
        if not (in_layers or (r.fp8_logits and p.name == "lm_head.weight")):
            continue
        numel = p.layers * p.numel
        if p.routed:
            numel //= ep
        total += numel // tp if p.sharded else numel
    per_element = 1 if r.gemm_dtype == "fp8" else 0.5
    return int(2 * per_element * total)
