"""Analytic GEMM time: roofline + tile quantization + wave quantization + alignment.

C[m, n] = A[m, k] · B[k, n], ``batch`` independent products, row-major operands.

For every candidate CTA tile (BM, BN) of the GPU and a split-K factor s, the model prices

    tiles   = ceil(m / BM) · ceil(n / BN) · batch · s        (a partial tile costs a whole one)
    waves   = ceil(tiles / (SMs · CTAs per SM))              (a partial wave costs a whole one)
    t_tile  = 2 · BM · BN · (ceil(k / s) + k_fill) / (peak/SMs · eff · reuse(BM, BN) · align)
    compute = waves · t_tile  (+ the split-K reduction's traffic when s > 1)
    memory  = bytes moved at least once / (bandwidth · bandwidth_efficiency)
    time    = max(compute, memory) + overlap_penalty · min(compute, memory) + launch

and keeps the cheapest candidate, as a vendor BLAS heuristic would. docs/cost-model.md gives
the reason for every term. Everything here is pure arithmetic on numbers: no torch.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from shapewise.cost.defaults import calibration_of
from shapewise.errors import InputError
from shapewise.hardware.catalog import DTYPE_BYTES, GPU, canonical_dtype, get_gpu

SPLIT_K_FACTORS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


def check_dim(value: Any, name: str) -> int:
    """A positive integer size, or InputError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer() and value > 0:
            return int(value)
        raise InputError(f"{name}: must be a positive integer, got {value!r}")
    if value <= 0:
        raise InputError(f"{name}: must be a positive integer, got {value!r}")
    if value > 2**40:
        raise InputError(f"{name}: {value} is beyond any GEMM a GPU can hold")
    return int(value)


class _Model(NamedTuple):
    """The numbers of one (GPU, dtype) the GEMM model needs; hashable for caching."""

    sm_rate: float  # FLOP/s of one SM at the fitted main-loop efficiency
    slots: int  # CTAs resident at once over the whole GPU
    tiles: tuple[tuple[int, int], ...]
    reuse_ref: float
    reuse_cost: float
    k_fill: float
    launch_s: float
    stream_bw: float  # bytes/s a streaming kernel sustains
    bytes_in: int
    bytes_out: int
    align16: int  # elements in 16 bytes
    align_coarse: int  # elements in alignment_bytes
    f16: float
    fcoarse: float
    overlap: float
    peak: float
    bandwidth: float


_MODELS: dict[tuple[int, str], tuple[GPU, _Model]] = {}


def _model(gpu: GPU, dtype: str) -> _Model:
    key = (id(gpu), dtype)
    hit = _MODELS.get(key)
    if hit is not None and hit[0] is gpu:
        return hit[1]
    cal = calibration_of(gpu)
    peak = gpu.peak_flops(dtype)
    nbytes = DTYPE_BYTES[dtype]
    # tf32 and fp32 GEMMs write fp32; 16-bit and fp8 GEMMs write 16-bit outputs (bf16).
    bytes_out = 4 if nbytes >= 4 else 2
    model = _Model(
        sm_rate=peak * cal.efficiency(dtype) / gpu.sm_count,
        slots=gpu.sm_count * gpu.ctas_per_sm,
        tiles=tuple(gpu.gemm_tiles),
        reuse_ref=min(128 / bm + 128 / bn for bm, bn in gpu.gemm_tiles),
        reuse_cost=cal.tile_reuse_cost,
        k_fill=cal.k_fill,
        launch_s=cal.launch_us * 1e-6,
        stream_bw=gpu.bandwidth * cal.bandwidth_efficiency,
        bytes_in=nbytes,
        bytes_out=bytes_out,
        align16=max(1, 16 // nbytes),
        align_coarse=gpu.alignment_elements(dtype),
        f16=cal.misalign_16b_factor,
        fcoarse=cal.misalign_coarse_factor,
        overlap=cal.overlap_penalty,
        peak=peak,
        bandwidth=gpu.bandwidth,
    )
    _MODELS[key] = (gpu, model)
    return model


def _align_factor(md: _Model, n: int, k: int) -> float:
    """Throughput factor from the contiguous dims (k of A, n of B and C) being aligned."""
    factor = 1.0
    for size in (n, k):
        if size % md.align16:
            factor = min(factor, md.f16)
        elif size % md.align_coarse:
            factor = min(factor, md.fcoarse)
    return factor


class _Choice(NamedTuple):
    time: float
    compute: float
    memory: float
    tile: tuple[int, int]
    split_k: int
    ctas: int
    waves: int


@lru_cache(maxsize=1 << 16)
def _best(md: _Model, m: int, n: int, k: int, batch: int) -> _Choice:
    align = _align_factor(md, n, k)
    memory = (batch * ((m * k + k * n) * md.bytes_in + m * n * md.bytes_out)) / md.stream_bw
    best: _Choice | None = None
    for bm, bn in md.tiles:
        reuse = (1 + md.reuse_cost * md.reuse_ref) / (1 + md.reuse_cost * (128 / bm + 128 / bn))
        rate = md.sm_rate * reuse * align
        tiles_mn = -(-m // bm) * -(-n // bn) * batch
        for s in SPLIT_K_FACTORS:
            if s > 1 and (tiles_mn >= md.slots or k // s < 128):
                break  # split-K only pays when the grid cannot fill the GPU and K is deep
            ctas = tiles_mn * s
            waves = -(-ctas // md.slots)
            t_tile = 2.0 * bm * bn * (-(-k // s) + md.k_fill) / rate
            compute = waves * t_tile
            if s > 1:  # fp32 partial tiles written and read back by the reduction
                compute += 2.0 * batch * m * n * 4 * s / md.stream_bw
            t = max(compute, memory) + md.overlap * min(compute, memory) + md.launch_s
            if best is None or t < best.time:
                best = _Choice(t, compute, memory, (bm, bn), s, ctas, waves)
    assert best is not None
    return best


def _resolve(gpu: str | GPU, dtype: str) -> tuple[GPU, str]:
    g = get_gpu(gpu)
    d = canonical_dtype(dtype)
    g.peak_flops(d)  # raises InputError naming dtype if the GPU lacks it
    return g, d


def gemm_time(
    m: int, n: int, k: int, *, gpu: str | GPU, dtype: str = "bf16", batch: int = 1
) -> float:
    """Predicted kernel time in seconds of C[m,n] = A[m,k]·B[k,n], ``batch`` times.

    >>> t = gemm_time(8192, 8192, 8192, gpu="h100")
    >>> 0.70 < 2 * 8192**3 / t / 989.4e12 < 0.90
    True
    """
    m, n, k = check_dim(m, "m"), check_dim(n, "n"), check_dim(k, "k")
    batch = check_dim(batch, "batch")
    g, d = _resolve(gpu, dtype)
    return _best(_model(g, d), m, n, k, batch).time


@dataclass(frozen=True, slots=True)
class PadSuggestion:
    """Padding one dimension up to ``to`` makes the GEMM ``speedup``× faster."""

    dim: Literal["m", "n", "k"]
    frm: int
    to: int
    time_s: float
    speedup: float
    reason: str


@dataclass(frozen=True, slots=True)
class GemmExplanation:
    """Why a GEMM takes the time it does. All times in seconds."""

    m: int
    n: int
    k: int
    batch: int
    dtype: str
    gpu: str
    time_s: float
    flops: float
    bytes: float
    tflops: float
    """useful TFLOP/s (2·b·m·n·k over the predicted time)"""
    pct_of_peak: float
    bound: Literal["compute", "memory", "launch"]
    tile: tuple[int, int]
    split_k: int
    tiles: int
    """CTAs launched (output tiles × batch × split-K)"""
    slots: int
    """CTAs the GPU runs at once (SMs × CTAs per SM)"""
    waves: int
    last_wave_fill: float
    """fraction of the last wave's slots that hold a tile (1.0 = whole waves)"""
    tile_fill: float
    """useful fraction of the padded output tiles"""
    alignment: dict[str, str]
    compute_s: float
    memory_s: float
    launch_s: float
    calibration: str
    suggestions: tuple[PadSuggestion, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["suggestions"] = [asdict(s) for s in self.suggestions]
        return out

    def __str__(self) -> str:
        lines = [
            f"GEMM {self.m}x{self.n}x{self.k} (batch {self.batch}, {self.dtype}) on {self.gpu}: "
            f"{self.time_s * 1e6:.1f} us, {self.tflops:.1f} TFLOP/s "
            f"({self.pct_of_peak:.0f}% of dense peak), {self.bound}-bound",
            f"  tile {self.tile[0]}x{self.tile[1]}"
            + (f", split-K {self.split_k}" if self.split_k > 1 else "")
            + f": {self.tiles} tiles on {self.slots} slots = {self.waves} wave(s), "
            f"last wave {self.last_wave_fill:.0%} full; tiles {self.tile_fill:.0%} useful",
            "  alignment: " + ", ".join(f"{d}={v}" for d, v in self.alignment.items()),
            f"  compute {self.compute_s * 1e6:.1f} us, memory {self.memory_s * 1e6:.1f} us, "
            f"launch {self.launch_s * 1e6:.1f} us; calibration: {self.calibration}",
        ]
        lines += [f"  pad {s.dim} {s.frm} -> {s.to}: {s.speedup:.2f}x faster ({s.reason})"
                  for s in self.suggestions]
        return "\n".join(lines)


def _alignment_words(md: _Model, m: int, n: int, k: int) -> dict[str, str]:
    words = {}
    for name, size in (("m", m), ("n", n), ("k", k)):
        if size % md.align16:
            words[name] = f"{size} not a multiple of {md.align16} (16 bytes)"
        elif size % md.align_coarse:
            words[name] = f"{size} multiple of {md.align16}, not of {md.align_coarse}"
        else:
            words[name] = f"{size} aligned ({md.align_coarse})"
    return words


def _suggest(md: _Model, m: int, n: int, k: int, batch: int, base: float
             ) -> tuple[PadSuggestion, ...]:
    """Pad each dim up (never more than 10%) to the size that runs fastest."""
    found: list[PadSuggestion] = []
    for dim, size in (("m", m), ("n", n), ("k", k)):
        limit = max(size + md.align_coarse, int(size * 1.10))
        step = md.align16
        start = (size // step + 1) * step
        options = []
        for to in range(start, limit + 1, step):
            dims = {"m": m, "n": n, "k": k, dim: to}
            options.append((_best(md, dims["m"], dims["n"], dims["k"], batch).time, to))
        best_t, best_to = base, size
        fastest = min(options)[0] if options else base
        if fastest < base * 0.995:
            # among sizes within 0.5% of the fastest, prefer full alignment, then the smallest
            near = [(to % md.align_coarse != 0, to, t) for t, to in options
                    if t <= fastest * 1.005]
            _, best_to, best_t = min(near)
        if best_to != size:
            reasons = []
            if size % md.align_coarse and best_to % md.align_coarse == 0:
                reasons.append(f"aligns to {md.align_coarse}")
            elif size % md.align16 and best_to % md.align16 == 0:
                reasons.append("aligns to 16 bytes")
            old, new = _best(md, m, n, k, batch), _best(md, **{
                "m": m, "n": n, "k": k, dim: best_to}, batch=batch)
            if new.waves < old.waves or new.ctas % md.slots == 0:
                reasons.append("fills whole waves")
            if not reasons:
                reasons.append("better tile fit")
            found.append(PadSuggestion(dim, size, best_to, best_t, base / best_t,  # type: ignore[arg-type]
                                       " and ".join(reasons)))
    return tuple(sorted(found, key=lambda s: -s.speedup))


def explain_gemm(
    m: int, n: int, k: int, *, gpu: str | GPU, dtype: str = "bf16", batch: int = 1,
    suggest: bool = True,
) -> GemmExplanation:
    """The breakdown behind :func:`gemm_time`: tile, waves, bound, and what to pad."""
    m, n, k = check_dim(m, "m"), check_dim(n, "n"), check_dim(k, "k")
    batch = check_dim(batch, "batch")
    g, d = _resolve(gpu, dtype)
    md = _model(g, d)
    c = _best(md, m, n, k, batch)
    flops = 2.0 * batch * m * n * k
    nbytes = batch * ((m * k + k * n) * md.bytes_in + m * n * md.bytes_out)
    last = c.ctas - (c.waves - 1) * md.slots
    if md.launch_s > max(c.compute, c.memory):
        bound = "launch"
    else:
        bound = "compute" if c.compute >= c.memory else "memory"
    bm, bn = c.tile
    cal = calibration_of(g)
    return GemmExplanation(
        m=m, n=n, k=k, batch=batch, dtype=d, gpu=g.id, time_s=c.time, flops=flops,
        bytes=float(nbytes), tflops=flops / c.time / 1e12,
        pct_of_peak=100.0 * flops / c.time / md.peak, bound=bound,  # type: ignore[arg-type]
        tile=c.tile, split_k=c.split_k, tiles=c.ctas, slots=md.slots, waves=c.waves,
        last_wave_fill=last / md.slots,
        tile_fill=(m * n) / (math.ceil(m / bm) * bm * math.ceil(n / bn) * bn),
        alignment=_alignment_words(md, m, n, k), compute_s=c.compute, memory_s=c.memory,
        launch_s=md.launch_s,
        calibration="fitted" if cal.status == "fitted" else "spec-derived defaults",
        suggestions=_suggest(md, m, n, k, batch, c.time) if suggest else (),
    )


def physical_floor(m: int, n: int, k: int, *, gpu: str | GPU, dtype: str = "bf16",
                   batch: int = 1) -> float:
    """max(FLOPs / dense peak, minimum bytes / bandwidth): no kernel can beat it."""
    g, d = _resolve(gpu, dtype)
    md = _model(g, d)
    flops = 2.0 * batch * m * n * k
    nbytes = batch * ((m * k + k * n) * md.bytes_in + m * n * md.bytes_out)
    return max(flops / md.peak, nbytes / md.bandwidth)
