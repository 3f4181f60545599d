"""Sweep plans: which kernels to time so that a fit can pin down the cost model's parameters.

Pure Python (no torch): :func:`make_plan` turns a :class:`Target` (CPU, or a GPU's SM count
and memory) and a mode into an ordered tuple of measurement specs, each with a stable
``key`` such as ``"gemm:m=4096,n=4096,k=4096,b=1,dtype=bf16"``. The same inputs always give
the same plan, which is what lets ``--resume`` skip the keys already measured.

What each group is for (the cost-model parameter it pins down, see docs/cost-model.md):

==============  ============================================================================
group           shapes, and why
==============  ============================================================================
``ceiling``     large squares: the main-loop efficiency (``gemm_efficiency``)
``spread``      log-uniform random (m, n, k), a mix of aligned and odd: held-out validation of
                the whole GEMM model, and the bulk of the fit's data
``align``       one dimension of a big square moved off multiples of 128/64/8/2 elements:
                ``misalign_16b_factor``, ``misalign_coarse_factor``
``wave``        n stepped in whole 128-column tiles so the tile count crosses multiples of
                the SM count: wave quantization
``m_scan``      the token dimension from 16 to 8192 at fixed n, k: small-m tiles and waves
``k_scan``      k from 64 up at fixed m, n: pipeline fill (``k_fill``) and launch cost
``skinny``      m ≤ 64 or k ≤ 256: memory-bound GEMMs (bandwidth, ``launch_us``)
``llm``         the GEMMs of real transformer layers (QKV, out, MLP up/down)
``bmm``         attention-shaped batched GEMMs, (s×d)(d×s) and (s×s)(s×d)
``triton``      the Triton matmul with a known 128×128 tile: tile and wave quantization
``attention``   each attention backend over head dim, sequence, causal, GQA, backward
``elementwise`` norms, softmax, activations and copy over sizes: ``bandwidth_efficiency``
==============  ============================================================================

Modes: ``quick`` (a GPU in about a minute; the CPU, fp32 on 2 cores, in well under
2 minutes, all sizes ≤ 2048), ``full`` (a GPU in about 5 minutes), and ``tiny`` (sixteen
small kernels, for tests; ``shapewise bench --plan tiny``). Within a plan, specs run by
``priority`` (0 first), so a run stopped by its budget still has some of every group.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from shapewise.errors import InputError
from shapewise.hardware.catalog import DTYPE_BYTES
from shapewise.kernels import elementwise
from shapewise.kernels.problem import (
    AttentionProblem,
    Gemm,
    attention_bytes,
    attention_flops,
    gemm_bytes,
    gemm_flops,
)

#: Version of the plans; goes into the provenance. Bump it when a plan's shapes change.
PLAN_VERSION = "shapewise-plan/2"

Mode = Literal["quick", "full", "tiny"]
MODES: tuple[str, ...] = ("quick", "full", "tiny")
#: "tf32" is float32 storage with TF32 tensor-core math (torch's allow_tf32); "fp32" keeps
#: full-precision math (TF32 off), as torch does by default
BENCH_DTYPES: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16")

#: attention backends, in the order of ``shapewise.kernels.attention.BACKENDS``
GPU_ATTENTION_BACKENDS = ("flash", "efficient", "cudnn", "math", "flash_attn", "triton")
#: on the CPU only SDPA's flash (a CPU kernel) and math backends exist
CPU_ATTENTION_BACKENDS = ("flash", "math")


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """The device a plan is made for."""

    device: Literal["cpu", "gpu"]
    dtype: str
    """'fp32', 'fp16' or 'bf16': the dtype of every kernel in the plan"""
    sm_count: int = 0
    """streaming multiprocessors (NVIDIA) or compute units (AMD); 0 on the CPU"""
    memory_bytes: int = 0
    """device memory, to leave out problems that cannot fit; 0: unknown"""

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "gpu"):
            raise InputError(f"device: expected 'cpu' or 'gpu', got {self.device!r}")
        if self.dtype not in BENCH_DTYPES:
            raise InputError(f"dtype: bench measures {', '.join(BENCH_DTYPES)}, not {self.dtype!r}")
        if self.device == "gpu" and self.sm_count < 1:
            raise InputError(f"sm_count: a GPU target needs its SM count, got {self.sm_count}")
        if self.sm_count < 0 or self.memory_bytes < 0:
            raise InputError("sm_count and memory_bytes must not be negative")

    @property
    def itemsize(self) -> int:
        return DTYPE_BYTES[self.dtype]


# ------------------------------------------------------------------------------ the specs
@dataclass(frozen=True, slots=True, kw_only=True)
class GemmSpec:
    """(m, k) @ (k, n), batched when ``batch`` > 1; through torch.matmul or the Triton tile."""

    m: int
    n: int
    k: int
    batch: int = 1
    dtype: str
    backend: Literal["blas", "triton"] = "blas"
    tile: tuple[int, int, int] | None = None
    """(BLOCK_M, BLOCK_N, BLOCK_K) of the Triton kernel; None for BLAS"""
    group: str
    priority: int = 1

    @property
    def kind(self) -> str:
        return "bmm" if self.batch > 1 else "gemm"

    @property
    def key(self) -> str:
        key = f"{self.kind}:m={self.m},n={self.n},k={self.k},b={self.batch},dtype={self.dtype}"
        if self.backend != "blas":
            bm, bn, bk = self.tile or (0, 0, 0)
            key += f",backend={self.backend},tile={bm}x{bn}x{bk}"
        return key

    @property
    def problem(self) -> Gemm:
        """The GEMM it times, in the shared op vocabulary."""
        return Gemm(m=self.m, n=self.n, k=self.k, batch=self.batch, dtype=self.dtype)

    @property
    def flops(self) -> int:
        return gemm_flops(self.problem)

    @property
    def bytes(self) -> int:
        return gemm_bytes(self.problem)

    @property
    def working_set(self) -> int:
        """Device bytes the measurement allocates (operands and output)."""
        return self.bytes

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"m": self.m, "n": self.n, "k": self.k, "batch": self.batch}
        if self.tile is not None:
            out["tile"] = list(self.tile)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class AttentionSpec:
    """One attention pass: q (batch, heads, seq_len, head_dim), k/v with kv_heads."""

    batch: int
    heads: int
    kv_heads: int
    seq_len: int
    seq_len_kv: int
    head_dim: int
    causal: bool
    backward: bool = False
    backend: str
    dtype: str
    group: str = "attention"
    priority: int = 1

    kind = "attention"

    @property
    def key(self) -> str:
        return (f"attention:b={self.batch},h={self.heads},kvh={self.kv_heads},s={self.seq_len},"
                f"skv={self.seq_len_kv},d={self.head_dim},causal={int(self.causal)},"
                f"bwd={int(self.backward)},backend={self.backend},dtype={self.dtype}")

    @property
    def problem(self) -> AttentionProblem:
        """The attention call it times, in the shared op vocabulary."""
        return AttentionProblem(batch=self.batch, heads=self.heads, kv_heads=self.kv_heads,
                                seq_len=self.seq_len, seq_len_kv=self.seq_len_kv,
                                head_dim=self.head_dim, causal=self.causal,
                                backward=self.backward, backend=self.backend, dtype=self.dtype)

    @property
    def flops(self) -> int:
        """4·b·h·d per (query, key) pair forward; backward 2.5× (see kernels.problem)."""
        return attention_flops(self.problem)

    @property
    def bytes(self) -> int:
        return attention_bytes(self.problem)

    @property
    def working_set(self) -> int:
        """Inputs and outputs, plus the score matrix the math backend materialises."""
        scores = self.batch * self.heads * self.seq_len * self.seq_len_kv * 4 * 3
        return 3 * self.bytes + (scores if self.backend == "math" else 0)

    def fields(self) -> dict[str, Any]:
        return {
            "batch": self.batch, "heads": self.heads, "kv_heads": self.kv_heads,
            "seq_len": self.seq_len, "seq_len_kv": self.seq_len_kv,
            "head_dim": self.head_dim, "causal": self.causal, "backward": self.backward,
        }


#: FLOPs per element of each memory-bound op the kernels time
ELEMENTWISE_OPS: dict[str, int] = elementwise.OPS


@dataclass(frozen=True, slots=True, kw_only=True)
class ElementwiseSpec:
    """A memory-bound op on a (rows, cols) tensor, reducing over cols where it reduces."""

    op: str
    rows: int
    cols: int
    dtype: str
    group: str = "elementwise"
    priority: int = 1

    kind = "elementwise"
    backend = "torch"

    @property
    def key(self) -> str:
        return f"elementwise:op={self.op},rows={self.rows},cols={self.cols},dtype={self.dtype}"

    @property
    def numel(self) -> int:
        return self.rows * self.cols

    @property
    def flops(self) -> int:
        return elementwise.flops(self.op, self.rows, self.cols)

    @property
    def bytes(self) -> int:
        return elementwise.bytes_moved(self.op, self.rows, self.cols, dtype=self.dtype)

    @property
    def working_set(self) -> int:
        return self.bytes

    def fields(self) -> dict[str, Any]:
        return {"op": self.op, "numel": self.numel, "rows": self.rows, "cols": self.cols}


Spec = GemmSpec | AttentionSpec | ElementwiseSpec


def spec_record(spec: Spec) -> dict[str, Any]:
    """The fields of a measurement record that the spec alone decides (no timing yet)."""
    return {
        "key": spec.key,
        "kind": spec.kind,
        "group": spec.group,
        "backend": spec.backend,
        "dtype": spec.dtype,
        **spec.fields(),
        "flops": spec.flops,
        "bytes": spec.bytes,
    }


# ------------------------------------------------------------------------------- helpers
def _spread_shapes(rng: random.Random, count: int, *, lo: int, hi: int, max_flops: float,
                   max_bytes: float, itemsize: int) -> Iterator[tuple[int, int, int]]:
    """``count`` (m, n, k) with each dim log-uniform in [lo, hi]; half rounded to a multiple
    of 64 (model dims), a quarter to 8, a quarter left as drawn (odd sizes occur: vocabularies,
    ragged batches). Shapes over ``max_flops`` or ``max_bytes`` are redrawn."""
    made = 0
    while made < count:
        dims = []
        for _ in range(3):
            x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            r = rng.random()
            step = 64 if r < 0.5 else (8 if r < 0.75 else 1)
            dims.append(max(step, round(x / step) * step))
        m, n, k = dims
        if 2 * m * n * k > max_flops or (m * k + k * n + m * n) * itemsize > max_bytes:
            continue
        made += 1
        yield m, n, k


def _dedupe(specs: Iterable[Spec]) -> tuple[Spec, ...]:
    """Drop repeated keys (the first group to ask for a shape keeps it), then order by
    priority, keeping the plan's order within a priority."""
    seen: set[str] = set()
    unique: list[Spec] = []
    for s in specs:
        if s.key not in seen:
            seen.add(s.key)
            unique.append(s)
    return tuple(sorted(unique, key=lambda s: s.priority))  # sorted() is stable


def _fits(spec: Spec, target: Target) -> bool:
    # leave 60% of the memory to the allocator, the L2 flush buffer and fragmentation
    return target.memory_bytes == 0 or spec.working_set <= 0.4 * target.memory_bytes


# ------------------------------------------------------------------------------ the plans
def make_plan(target: Target, mode: Mode = "quick") -> tuple[Spec, ...]:
    """The ordered, de-duplicated specs for ``target`` in ``mode``.

    >>> plan = make_plan(Target(device="gpu", dtype="bf16", sm_count=132), "quick")
    >>> plan[0].key
    'gemm:m=4096,n=4096,k=4096,b=1,dtype=bf16'
    >>> len({s.key for s in plan}) == len(plan)
    True
    """
    if mode not in MODES:
        raise InputError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if mode == "tiny":
        specs = list(_tiny(target))
    elif target.device == "cpu":
        specs = list(_cpu(target, full=mode == "full"))
    else:
        specs = list(_gpu(target, full=mode == "full"))
    if target.dtype == "tf32":  # training runs attention and norms in 16-bit: GEMMs only
        specs = [s for s in specs if isinstance(s, GemmSpec)]
    return _dedupe(s for s in specs if _fits(s, target))


def _tiny(t: Target) -> Iterator[Spec]:
    """Sixteen small kernels of every kind, one unsupported (skipped) backend included;
    ten GEMMs, enough for ``shapewise fit`` to run (it needs 8)."""
    dt = t.dtype
    for m, n, k in ((128, 128, 128), (256, 256, 256), (100, 200, 50), (64, 256, 128),
                    (192, 64, 320), (256, 128, 256), (32, 512, 64), (384, 96, 200),
                    (16, 256, 256), (300, 300, 30)):
        yield GemmSpec(m=m, n=n, k=k, dtype=dt, group="spread", priority=0)
    yield GemmSpec(m=128, n=128, k=64, batch=4, dtype=dt, group="bmm", priority=0)
    for backend in ("math", "flash", "efficient"):
        yield AttentionSpec(batch=1, heads=2, kv_heads=2, seq_len=128, seq_len_kv=128,
                            head_dim=32, causal=True, backend=backend, dtype=dt, priority=0)
    for op in ("layernorm", "copy"):
        yield ElementwiseSpec(op=op, rows=256, cols=256, dtype=dt, priority=0)


def _cpu(t: Target, *, full: bool) -> Iterator[Spec]:
    """CPU plan. Quick: about 150 kernels, none over 2048 in any dim, each timed for
    0.05-0.4 s, the largest (2048³, 17 GFLOP) about 0.15 s a call at ~120 GFLOP/s fp32 on
    2 cores: under a minute of timing."""
    dt = t.dtype
    top = 4096 if full else 2048

    def g(m: int, n: int, k: int, group: str, priority: int, batch: int = 1) -> GemmSpec:
        return GemmSpec(m=m, n=n, k=k, batch=batch, dtype=dt, group=group, priority=priority)

    for s in (256, 512, 1024, 2048, *((3072, 4096) if full else ())):
        yield g(s, s, s, "ceiling", 0)
    rng = random.Random(f"{PLAN_VERSION}:cpu:{'full' if full else 'quick'}")
    # 2·1024³ FLOPs (~20 ms a call) keeps each spread point cheap; 48 points span 5 decades
    n_spread, max_flops = (160, 2 * 2048.0**3) if full else (48, 2 * 1024.0**3)
    for m, n, k in _spread_shapes(rng, n_spread, lo=16, hi=top, max_flops=max_flops,
                                  max_bytes=256e6, itemsize=t.itemsize):
        yield g(m, n, k, "spread", 0)
    # alignment: AVX2/AVX-512 vectors hold 8/16 fp32, a cache line 16; BLAS packs panels
    offsets = (1, 4, 8, 16, 32, 64) if not full else (-1, 1, 2, 4, 8, 16, 24, 32, 48, 64, 128)
    dims = ("n", "k") if not full else ("m", "n", "k")
    for base in (512,) if not full else (512, 1024):
        for dim in dims:
            for off in offsets:
                shape = {"m": base, "n": base, "k": base, dim: base + off}
                yield g(shape["m"], shape["n"], shape["k"], "align", 1)
    for m in (1, 4, 16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048):
        yield g(m, 1024, 1024, "m_scan", 1)
    for k in (16, 32, 64, 128, 256, 512, 1024, 2048, *((4096, 8192) if full else ())):
        yield g(512, 512, k, "k_scan", 1)
    for m in (1, 8, 32):
        yield g(m, 2048, 2048, "skinny", 1)
    for k in (16, 64):
        yield g(1024, 1024, k, "skinny", 1)
    for batch, s, d in ((8, 256, 64), (8, 512, 64), (4, 512, 128), (16, 128, 64),
                        *(((32, 512, 64), (8, 1024, 128)) if full else ())):
        yield g(s, s, d, "bmm", 1, batch=batch)  # scores: (s, d) @ (d, s)
        yield g(s, d, s, "bmm", 1, batch=batch)  # values: (s, s) @ (s, d)
    yield from _attention(t, backends=CPU_ATTENTION_BACKENDS, heads_hidden=512,
                          tokens=1024, seqs=(128, 256, 512, 1024), dims=(64,), full=full,
                          bwd_seqs=(256,), max_seq_math=1024)
    for op in ELEMENTWISE_OPS:
        for rows, cols in ((512, 1024), (2048, 2048), (4096, 4096)):
            yield ElementwiseSpec(op=op, rows=rows, cols=cols, dtype=dt, priority=0)
        if full:
            for rows, cols in ((64, 1024), (8192, 1024), (1024, 8192)):
                yield ElementwiseSpec(op=op, rows=rows, cols=cols, dtype=dt, priority=2)


def _gpu(t: Target, *, full: bool) -> Iterator[Spec]:
    dt = t.dtype
    sms = t.sm_count
    mode = "full" if full else "quick"

    def g(m: int, n: int, k: int, group: str, priority: int, batch: int = 1) -> GemmSpec:
        return GemmSpec(m=m, n=n, k=k, batch=batch, dtype=dt, group=group, priority=priority)

    # --- ceilings: big squares reach the main-loop efficiency
    for s in (4096, 8192, 2048, 6144, 1024, *((12288, 16384) if full else ())):
        yield g(s, s, s, "ceiling", 0)

    # --- spread: validation data over the whole range an LLM uses
    rng = random.Random(f"{PLAN_VERSION}:gpu:{mode}")
    n_spread = 200 if full else 60
    for m, n, k in _spread_shapes(rng, n_spread, lo=64, hi=16384, max_flops=2 * 8192.0**3,
                                  max_bytes=2e9, itemsize=t.itemsize):
        yield g(m, n, k, "spread", 0)

    # --- alignment: 128 bytes (64 bf16 / 32 fp32 elements) feed the tensor cores fully,
    # 16 bytes (8 bf16) allow vector loads; below that cuBLAS may pad or pick slow kernels
    offsets = (1, 2, 4, 8, 16, 32, 64, 96, 128)
    if full:
        offsets = (-64, -8, -1, 1, 2, 3, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 255)
    for base in (4096,) if not full else (4096, 2048):
        for dim in ("n", "k") if not full else ("m", "n", "k"):
            for off in offsets:
                shape = {"m": base, "n": base, "k": base, dim: base + off}
                yield g(shape["m"], shape["n"], shape["k"], "align", 0 if base == 4096 else 1)

    # --- waves: m = 2048 is 16 rows of 128-row tiles, so n = 128·j makes 16·j tiles; step j
    # from half a wave to 4 waves of the SM count, densely around each wave boundary
    rows = 16
    top = 4 * sms // rows + 2
    js = set(range(2, top + 1, 1 if full else 3))
    for w in range(1, 5):
        edge = w * sms / rows
        js.update(j for j in (math.floor(edge), math.ceil(edge), math.ceil(edge) + 1) if j > 0)
    for j in sorted(js):
        yield g(rows * 128, 128 * j, 4096, "wave", 0 if j % 3 == 2 else 1)
    if full:  # the same at 256-row tiles' scale: m = 4096, n in 256 steps
        for j in range(1, 4 * sms // 16 + 2):
            yield g(4096, 256 * j, 4096, "wave", 2)

    # --- token dimension, k depth, memory-bound shapes
    for m in (16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 8192,
              *((6144, 12288, 16384) if full else ())):
        yield g(m, 4096, 4096, "m_scan", 1)
    for k in (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384):
        yield g(4096, 4096, k, "k_scan", 1)
    for m in (1, 2, 4, 8, 16, 32, 64):
        yield g(m, 8192, 8192, "skinny", 0 if m in (1, 16) else 1)
    for k in (16, 32, 64, 128, 256):
        yield g(8192, 8192, k, "skinny", 1)

    # --- GEMMs of real layers: hidden h, SwiGLU f = 8h/3 rounded up to 256 and unrounded,
    # tokens b·s = 8192; forward Y = XW, and dW = XᵀdY (reduction over the tokens)
    if full:
        for h in (1024, 2048, 2560, 4096, 5120, 8192):
            ffn = -(-8 * h // 3 // 256) * 256
            for n, k in ((3 * h, h), (h, h), (ffn, h), (h, ffn), (8 * h // 3, h)):
                yield g(8192, n, k, "llm", 2)
                yield g(k, n, 8192, "llm", 2)

    # --- batched GEMMs of unfused attention: batch = b·heads
    for s in (512, 1024, 2048, 4096):
        for d in (64, 128) if full else (128,):
            batch = max(8, 65536 // s)  # 64k query rows in all
            yield g(s, s, d, "bmm", 1, batch=batch)
            yield g(s, d, s, "bmm", 1, batch=batch)

    # --- the Triton matmul with a known tile
    # 4-byte operands: half the K-depth per stage, so the tile fits the shared memory of
    # an A100 too (128x128x64 in fp32/tf32 needs 192 KB there)
    tile = (128, 128, 64) if dt not in ("fp32", "tf32") else (128, 128, 32)
    bm, bn, _ = tile

    def tri(m: int, n: int, k: int, priority: int) -> GemmSpec:
        return GemmSpec(m=m, n=n, k=k, dtype=dt, backend="triton", tile=tile, group="triton",
                        priority=priority)

    for s in (2048, 4096, 8192):
        yield tri(s, s, s, 1)
    for r in (0, 1, 16, 32, 64, 96, 127) if full else (0, 1, 64, 127):
        yield tri(3072, 3072 + r, 4096, 1)  # one extra, partly empty, column of tiles
        yield tri(3072 + r, 3072, 4096, 2)
    tile_rows = 2048 // bm
    for j in sorted({*range(2, 4 * sms // tile_rows + 2, 2 if full else 4),
                     *(math.ceil(w * sms / tile_rows) for w in (1, 2, 3))}):
        yield tri(2048, bn * j, 4096, 1 if j % 4 == 2 else 2)

    # --- attention
    yield from _attention(t, backends=GPU_ATTENTION_BACKENDS, heads_hidden=2048,
                          tokens=16384,
                          seqs=(512, 1024, 2048, 4096, 8192, 16384) if full else (1024, 4096),
                          dims=(64, 128, 80, 96, 192, 256) if full else (64, 128),
                          full=full, bwd_seqs=(1024, 4096) if full else (4096,),
                          max_seq_math=4096)

    # --- memory-bound ops, from launch-bound to bandwidth-bound sizes
    numels = (1 << 16, 1 << 20, 1 << 24, 1 << 26)
    if full:
        numels = (1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24, 1 << 26, 1 << 28)
    for op in ELEMENTWISE_OPS:
        for numel in numels:
            for cols in (4096,) if not full else (4096, 1024, 8192):
                yield ElementwiseSpec(op=op, rows=max(1, numel // cols), cols=cols, dtype=dt,
                                      priority=0 if cols == 4096 else 2)


def _attention(t: Target, *, backends: tuple[str, ...], heads_hidden: int, tokens: int,
               seqs: tuple[int, ...], dims: tuple[int, ...], full: bool,
               bwd_seqs: tuple[int, ...], max_seq_math: int) -> Iterator[AttentionSpec]:
    """Each backend over sequence length and head dim (heads = hidden / head_dim, batch =
    tokens / seq), causal and not; GQA at 4 and at all query heads per kv head; backward."""
    dt = t.dtype
    main_dims = dims[:2]
    for backend in backends:
        seq_cap = max_seq_math if backend == "math" else max(seqs)

        def a(*, seq: int, d: int, causal: bool, kv_div: int = 1, backward: bool = False,
              priority: int, backend: str = backend) -> AttentionSpec:
            heads = max(1, heads_hidden // d)
            return AttentionSpec(batch=max(1, tokens // seq), heads=heads,
                                 kv_heads=max(1, heads // kv_div), seq_len=seq,
                                 seq_len_kv=seq, head_dim=d, causal=causal, backward=backward,
                                 backend=backend, dtype=dt, priority=priority)

        for d in dims:
            for seq in seqs:
                if seq > seq_cap:
                    continue
                for causal in (True, False):
                    main = d in main_dims and seq in (seqs[0], seqs[-1], 4096, 1024)
                    yield a(seq=seq, d=d, causal=causal, priority=0 if main else 2)
        gqa_seq = min(seq_cap, 4096, max(seqs))
        for kv_div in (4, heads_hidden // main_dims[-1]) if full else (4,):
            yield a(seq=gqa_seq, d=main_dims[-1], causal=True, kv_div=kv_div, priority=1)
        for seq in bwd_seqs:
            if seq > seq_cap:
                continue
            for d in main_dims if full else main_dims[-1:]:
                for causal in (True, False):
                    yield a(seq=seq, d=d, causal=causal, backward=True, priority=1)
