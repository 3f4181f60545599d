"""The accelerator catalog: one JSON profile per GPU, validated on load.

A profile holds datasheet facts (each with its source) and, optionally, a ``calibration``
block of cost-model parameters fitted to measurements (with provenance). Profiles ship in
``profiles/`` (installed as ``shapewise.profiles``); users add their own through
``SHAPEWISE_PROFILES`` (folders separated by ``os.pathsep``) or load one by path.

Profiles are data: parsed with ``json`` only, never executed; NaN, infinities, negative or
mistyped values are errors that name the file and the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from shapewise._io import read_json
from shapewise.errors import InputError

SCHEMA_VERSION = 1
MAX_PROFILE_BYTES = 4 * 1024 * 1024  # a profile is a few KB; refuse anything absurd

#: bytes per element of each data type the cost model knows.
DTYPE_BYTES: dict[str, int] = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,
    "fp16": 2,
    "bf16": 2,
    "fp8": 1,
    "int8": 1,
}
#: dtype names users may type, mapped to the canonical key.
DTYPE_ALIASES: dict[str, str] = {
    "float64": "fp64",
    "double": "fp64",
    "float32": "fp32",
    "float": "fp32",
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "float8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "e4m3": "fp8",
    "e5m2": "fp8",
}

Vendor = Literal["nvidia", "amd", "cpu", "other"]
_VENDORS = ("nvidia", "amd", "cpu", "other")

# Spec fields that must each name a source in the profile's "sources" mapping.
_SOURCED_FIELDS = (
    "sm_count",
    "boost_clock_mhz",
    "peak_tflops",
    "memory_gb",
    "memory_bandwidth_tbs",
    "l2_mb",
    "smem_per_sm_kb",
    "warp_size",
    "matrix_instruction",
    "alignment_bytes",
    "gemm_tiles",
    "attention_tiles",
    "link_bandwidth_gbs",
)


def canonical_dtype(dtype: str, *, field_name: str = "dtype") -> str:
    """'bfloat16' -> 'bf16'. Raises InputError naming ``field_name`` for unknown types."""
    if not isinstance(dtype, str):
        raise InputError(f"{field_name}: expected a dtype name such as 'bf16', got {dtype!r}")
    key = dtype.strip().lower().replace("torch.", "")
    key = DTYPE_ALIASES.get(key, key)
    if key not in DTYPE_BYTES:
        raise InputError(
            f"{field_name}: unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}"
        )
    return key


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """Cost-model parameters of one GPU (see docs/cost-model.md for each equation).

    ``status`` is "fitted" when the numbers were fitted to measurements (``provenance`` says
    which), "default" when they are the cross-GPU defaults of ``shapewise.cost.defaults``.
    """

    status: Literal["fitted", "default"]
    #: fraction of the dense peak a GEMM main loop sustains, per dtype (0 < x <= 1)
    gemm_efficiency: Mapping[str, float]
    #: fixed time per kernel launch (as the kernel timer sees it), microseconds
    launch_us: float
    #: pipeline fill/drain of one CTA tile, in K elements of extra main-loop work
    k_fill: float
    #: fraction of the memory bandwidth a streaming kernel sustains
    bandwidth_efficiency: float
    #: throughput factor when a GEMM dim is not a multiple of 16 bytes (no vector loads)
    misalign_16b_factor: float
    #: throughput factor when 16-byte but not ``alignment_bytes`` aligned
    misalign_coarse_factor: float
    #: operand-reuse cost of small tiles (0: tile size does not matter)
    tile_reuse_cost: float
    #: FlashAttention forward / backward main-loop efficiency (fraction of dense peak)
    attention_fwd_efficiency: float
    attention_bwd_efficiency: float
    #: where the numbers come from: data files, dates, method, errors
    provenance: Mapping[str, Any] = field(default_factory=dict)
    #: share of the shorter of compute and memory time that does not overlap the longer
    #: (0: perfect overlap, as GPU kernels stream operands under the math; ~1 on CPUs,
    #: where BLAS packs operands before computing)
    overlap_penalty: float = 0.0
    #: per attention backend (``shapewise.cost.attention.BACKENDS``): its fitted parameters,
    #: e.g. {"cudnn": {"fwd_efficiency": 0.7, "bwd_efficiency": 0.55}}; a backend absent
    #: here uses the spec-derived defaults of ``shapewise.cost.defaults``
    attention_backends: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def efficiency(self, dtype: str) -> float:
        """Main-loop efficiency for ``dtype``; types without their own fit share bf16's."""
        eff = self.gemm_efficiency
        if dtype in eff:
            return eff[dtype]
        for fallback in ("bf16", "fp16", "tf32", "fp32"):
            if fallback in eff:
                return eff[fallback]
        raise InputError("calibration.gemm_efficiency: empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class GPU:
    """One accelerator: datasheet facts with sources, plus cost-model calibration."""

    id: str
    """file stem, e.g. 'h100-sxm'"""
    name: str
    """marketing name, e.g. 'NVIDIA H100 SXM5 80GB'"""
    vendor: Vendor
    arch: str
    """architecture family, e.g. 'hopper', 'cdna3'"""
    arch_code: str
    """compute capability or gfx target, e.g. 'sm_90', 'gfx942'"""
    sm_count: int
    """streaming multiprocessors (NVIDIA) or compute units (AMD)"""
    boost_clock_mhz: float
    peak_tflops: Mapping[str, float]
    """dense (no 2:4 sparsity) peak per dtype, TFLOP/s; 'fp32' is the best full-precision
    FP32 GEMM rate (AMD CDNA: the matrix cores)"""
    memory_gb: float
    memory_bandwidth_tbs: float
    """HBM/GDDR bandwidth, TB/s (1e12 bytes/s)"""
    l2_mb: float
    smem_per_sm_kb: float
    warp_size: int
    matrix_instruction: str
    alignment_bytes: int
    """tensor cores are fully fed when m, n, k are multiples of this many bytes"""
    gemm_tiles: tuple[tuple[int, int], ...]
    """CTA output tiles (BM, BN) that the vendor BLAS picks from"""
    attention_tiles: Mapping[int, tuple[int, int]]
    """FlashAttention forward block (BlockM, BlockN) per head dim"""
    link_bandwidth_gbs: float
    """scale-up link bandwidth per GPU per direction, GB/s (0: no scale-up link)"""
    link_name: str = ""
    tdp_w: float | None = None
    ctas_per_sm: int = 1
    aliases: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict, repr=False)
    references: Mapping[str, str] = field(default_factory=dict, repr=False)
    notes: str = field(default="", repr=False)
    calibration: Calibration | None = field(default=None, repr=False)
    schema_version: int = field(default=SCHEMA_VERSION, repr=False)
    path: str = field(default="", repr=False)
    """the file it was loaded from"""

    # ---------------------------------------------------------------- derived quantities
    def supports(self, dtype: str) -> bool:
        return canonical_dtype(dtype) in self.peak_tflops

    def peak_flops(self, dtype: str) -> float:
        """Dense peak in FLOP/s for ``dtype``; InputError if the GPU lacks it."""
        key = canonical_dtype(dtype)
        if key not in self.peak_tflops:
            have = ", ".join(sorted(self.peak_tflops))
            raise InputError(f"dtype: {self.name} has no {key} math (it has: {have})")
        return self.peak_tflops[key] * 1e12

    @property
    def bandwidth(self) -> float:
        """Memory bandwidth, bytes/s."""
        return self.memory_bandwidth_tbs * 1e12

    def ridge_point(self, dtype: str) -> float:
        """Arithmetic intensity (FLOP/byte) where compute and memory time are equal."""
        return self.peak_flops(dtype) / self.bandwidth

    def alignment_elements(self, dtype: str) -> int:
        """Elements per ``alignment_bytes`` for ``dtype`` (64 for bf16 on A100+)."""
        return max(1, self.alignment_bytes // DTYPE_BYTES[canonical_dtype(dtype)])

    def with_calibration(self, calibration: Calibration) -> GPU:
        return dataclasses.replace(self, calibration=calibration)

    def __str__(self) -> str:
        bf16 = self.peak_tflops.get("bf16") or self.peak_tflops.get("fp16")
        peak = f"{bf16:g} TFLOP/s bf16, " if bf16 else ""
        return (
            f"{self.name} ({self.arch_code}, {self.sm_count} "
            f"{'CUs' if self.vendor == 'amd' else 'SMs'}, {peak}"
            f"{self.memory_gb:g} GB at {self.memory_bandwidth_tbs:g} TB/s)"
        )


# -------------------------------------------------------------------- parsing and checks
def _read_json(path: Path) -> Any:
    return read_json(path, limit=MAX_PROFILE_BYTES, what="a profile")


def _short(value: Any, limit: int = 60) -> str:
    """repr() cut to ``limit`` characters: error messages quote hostile values too."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _Checker:
    """Reads typed fields out of a JSON object, naming the file and field on any error."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field_name: str, problem: str) -> InputError:
        return InputError(f"{self.where}: field '{field_name}' {problem}")

    def number(self, obj: Mapping[str, Any], key: str, *, prefix: str = "",
               positive: bool = True, at_most: float | None = None, allow_zero: bool = False,
               required: bool = True, default: float | None = None) -> float:
        name = prefix + key
        if key not in obj:
            if required:
                raise self.fail(name, "is missing")
            return default  # type: ignore[return-value]
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"must be a number, got {type(value).__name__}")
        if isinstance(value, int) and abs(value) > 10**15:  # float() overflows past ~1e308
            raise self.fail(name, "must be a finite number of sensible size, got an integer of "
                            f"{len(str(abs(value)))} digits")
        value = float(value)
        if not math.isfinite(value) or abs(value) > 1e15:
            raise self.fail(name, f"must be a finite number of sensible size, "
                            f"got {_short(obj[key])}")
        if positive and (value < 0 or (value == 0 and not allow_zero)):
            raise self.fail(name, f"must be {'non-negative' if allow_zero else 'positive'}, "
                            f"got {value:g}")
        if at_most is not None and value > at_most:
            raise self.fail(name, f"must be at most {at_most:g}, got {value:g}")
        return value

    def integer(self, obj: Mapping[str, Any], key: str, *, prefix: str = "",
                required: bool = True, default: int | None = None) -> int:
        name = prefix + key
        if key not in obj and not required:
            return default  # type: ignore[return-value]
        value = self.number(obj, key, prefix=prefix)
        if value != int(value) or isinstance(obj[key], float):
            raise self.fail(name, f"must be an integer, got {_short(obj[key])}")
        return int(value)

    def string(self, obj: Mapping[str, Any], key: str, *, prefix: str = "",
               required: bool = True, default: str = "",
               choices: Iterable[str] | None = None) -> str:
        name = prefix + key
        if key not in obj:
            if required:
                raise self.fail(name, "is missing")
            return default
        value = obj[key]
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {type(value).__name__}")
        if choices is not None and value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, got {_short(value)!r}")
        return value

    def mapping(self, obj: Mapping[str, Any], key: str, *, prefix: str = "",
                required: bool = True) -> dict:
        name = prefix + key
        if key not in obj:
            if required:
                raise self.fail(name, "is missing")
            return {}
        value = obj[key]
        if not isinstance(value, dict):
            raise self.fail(name, f"must be an object, got {type(value).__name__}")
        return value

    def tile(self, value: Any, name: str) -> tuple[int, int]:
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 4096
                           for v in value)):
            raise self.fail(name, "must be [rows, cols] of positive integers, "
                            f"got {_short(value)}")
        return (value[0], value[1])


_TOP_LEVEL = {
    "schema_version", "id", "name", "vendor", "arch", "arch_code", "aliases", "sm_count",
    "boost_clock_mhz", "peak_tflops", "memory_gb", "memory_bandwidth_tbs", "l2_mb",
    "smem_per_sm_kb", "warp_size", "matrix_instruction", "alignment_bytes", "gemm_tiles",
    "attention_tiles", "link_name", "link_bandwidth_gbs", "tdp_w", "ctas_per_sm", "sources",
    "references", "notes", "calibration",
}
_CALIBRATION_FIELDS = {
    "status", "gemm_efficiency", "launch_us", "k_fill", "bandwidth_efficiency",
    "misalign_16b_factor", "misalign_coarse_factor", "tile_reuse_cost",
    "attention_fwd_efficiency", "attention_bwd_efficiency", "provenance", "overlap_penalty",
    "attention_backends",
}


def _parse_calibration(raw: Any, check: _Checker) -> Calibration:
    if not isinstance(raw, dict):
        raise check.fail("calibration", f"must be an object, got {type(raw).__name__}")
    unknown = set(raw) - _CALIBRATION_FIELDS
    if unknown:
        raise check.fail(f"calibration.{_short(sorted(unknown, key=str)[0])}",
                         "is not a known field")
    p = "calibration."
    eff_raw = check.mapping(raw, "gemm_efficiency", prefix=p)
    if not eff_raw:
        raise check.fail(p + "gemm_efficiency", "must name at least one dtype")
    eff = {}
    for key in eff_raw:
        if key not in DTYPE_BYTES:
            raise check.fail(f"{p}gemm_efficiency.{_short(key)}", "is not a known dtype")
        eff[key] = check.number(eff_raw, key, prefix=p + "gemm_efficiency.", at_most=1.0)
    provenance = check.mapping(raw, "provenance", prefix=p, required=False)
    try:  # free-form, but it must survive print_json (finite numbers, plain JSON data)
        json.dumps(provenance, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        raise check.fail(p + "provenance",
                         "must hold plain JSON data with finite numbers") from None

    def frac(key: str) -> float:
        return check.number(raw, key, prefix=p, at_most=1.0)

    backends: dict[str, dict[str, float]] = {}
    for name, params in check.mapping(raw, "attention_backends", prefix=p,
                                      required=False).items():
        where = f"{p}attention_backends.{_short(name)}"
        if not isinstance(params, dict):
            raise check.fail(where, f"must be an object, got {type(params).__name__}")
        backends[str(name)] = {
            str(k): check.number(params, k, prefix=where + ".", at_most=1e4, allow_zero=True)
            for k in params}

    return Calibration(
        status=check.string(raw, "status", prefix=p, choices=("fitted", "default")),  # type: ignore[arg-type]
        gemm_efficiency=eff,
        launch_us=check.number(raw, "launch_us", prefix=p, allow_zero=True, at_most=1e4),
        k_fill=check.number(raw, "k_fill", prefix=p, allow_zero=True, at_most=1e5),
        bandwidth_efficiency=frac("bandwidth_efficiency"),
        misalign_16b_factor=frac("misalign_16b_factor"),
        misalign_coarse_factor=frac("misalign_coarse_factor"),
        tile_reuse_cost=check.number(raw, "tile_reuse_cost", prefix=p, allow_zero=True,
                                     at_most=100.0),
        attention_fwd_efficiency=frac("attention_fwd_efficiency"),
        attention_bwd_efficiency=frac("attention_bwd_efficiency"),
        provenance=provenance,
        overlap_penalty=check.number(raw, "overlap_penalty", prefix=p, allow_zero=True,
                                     at_most=1.0, required=False, default=0.0),
        attention_backends=backends,
    )


def parse_profile(raw: Any, *, where: str) -> GPU:
    """Validate a decoded profile object and build its :class:`GPU`.

    ``where`` names the source (a path) in every error message.
    """
    check = _Checker(where)
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a profile must be a JSON object, got {type(raw).__name__}")
    unknown = set(raw) - _TOP_LEVEL
    if unknown:
        raise check.fail(_short(sorted(unknown, key=str)[0]), "is not a known field (typo?)")
    version = check.integer(raw, "schema_version")
    if version != SCHEMA_VERSION:
        raise check.fail("schema_version", f"is {version}; this shapewise reads {SCHEMA_VERSION}")

    peaks_raw = check.mapping(raw, "peak_tflops")
    if not peaks_raw:
        raise check.fail("peak_tflops", "must name at least one dtype")
    peaks = {}
    for key in peaks_raw:
        if key not in DTYPE_BYTES:
            raise check.fail(f"peak_tflops.{_short(key)}",
                             f"is not a known dtype ({', '.join(DTYPE_BYTES)})")
        peaks[key] = check.number(peaks_raw, key, prefix="peak_tflops.")

    tiles_raw = raw.get("gemm_tiles")
    if not isinstance(tiles_raw, list) or not tiles_raw:
        raise check.fail("gemm_tiles", "must be a non-empty list of [rows, cols]")
    tiles = tuple(check.tile(t, f"gemm_tiles[{i}]") for i, t in enumerate(tiles_raw))

    att_raw = check.mapping(raw, "attention_tiles")
    att: dict[int, tuple[int, int]] = {}
    for key, value in att_raw.items():
        # ASCII digits only: str.isdigit() accepts '²', which int() then rejects
        if not isinstance(key, str) or not re.fullmatch(r"[0-9]{1,3}", key) \
                or not 0 < int(key) <= 512:
            raise check.fail(f"attention_tiles.{_short(key)}",
                             "key must be a head dim (integer string)")
        att[int(key)] = check.tile(value, f"attention_tiles.{key}")
    if not att:
        raise check.fail("attention_tiles", "must name at least one head dim")

    aliases_raw = raw.get("aliases", [])
    if not isinstance(aliases_raw, list) or not all(isinstance(a, str) for a in aliases_raw):
        raise check.fail("aliases", "must be a list of strings")
    for i, alias in enumerate(aliases_raw):
        if not _norm(alias):  # '' or '---' would match nothing, or everything typed as ''
            raise check.fail(f"aliases[{i}]", f"must contain a letter or digit, got {alias!r:.60}")

    sources = check.mapping(raw, "sources")
    references = check.mapping(raw, "references", required=False)
    for group, entries in (("sources", sources), ("references", references)):
        for key, value in entries.items():
            if not isinstance(value, str) or not value.strip():
                raise check.fail(f"{group}.{_short(key)}", "must be a non-empty string")
    for name in _SOURCED_FIELDS:
        if name not in sources:
            raise check.fail(f"sources.{name}", "is missing: every spec value needs a source")
    if raw.get("tdp_w") is not None and "tdp_w" not in sources:  # optional, but sourced
        raise check.fail("sources.tdp_w", "is missing: every spec value needs a source")
    if references:  # then each source is a key into references, not a citation of its own
        for key, value in sources.items():
            if value not in references:
                raise check.fail(f"sources.{_short(key)}",
                                 f"names {_short(value)!r}, which is not a key of 'references'")

    tdp = raw.get("tdp_w")
    calibration = raw.get("calibration")
    gpu = GPU(
        id=check.string(raw, "id"),
        name=check.string(raw, "name"),
        vendor=check.string(raw, "vendor", choices=_VENDORS),  # type: ignore[arg-type]
        arch=check.string(raw, "arch"),
        arch_code=check.string(raw, "arch_code"),
        sm_count=check.integer(raw, "sm_count"),
        boost_clock_mhz=check.number(raw, "boost_clock_mhz"),
        peak_tflops=peaks,
        memory_gb=check.number(raw, "memory_gb"),
        memory_bandwidth_tbs=check.number(raw, "memory_bandwidth_tbs"),
        l2_mb=check.number(raw, "l2_mb", allow_zero=True),
        smem_per_sm_kb=check.number(raw, "smem_per_sm_kb"),
        warp_size=check.integer(raw, "warp_size"),
        matrix_instruction=check.string(raw, "matrix_instruction"),
        alignment_bytes=check.integer(raw, "alignment_bytes"),
        gemm_tiles=tiles,
        attention_tiles=att,
        link_name=check.string(raw, "link_name", required=False),
        link_bandwidth_gbs=check.number(raw, "link_bandwidth_gbs", allow_zero=True),
        tdp_w=None if tdp is None else check.number(raw, "tdp_w"),
        ctas_per_sm=check.integer(raw, "ctas_per_sm", required=False, default=1),
        aliases=tuple(aliases_raw),
        sources=dict(sources),
        references=dict(references),
        notes=check.string(raw, "notes", required=False),
        calibration=None if calibration is None else _parse_calibration(calibration, check),
        schema_version=version,
        path=where,
    )
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", gpu.id):
        raise check.fail("id", "must be lower-case letters, digits, '.', '_' or '-', "
                         f"got {_short(gpu.id)!r}")
    return gpu


def load_profile(path: str | os.PathLike[str]) -> GPU:
    """Load and validate one profile file (JSON only; nothing in it is executed)."""
    p = Path(path)
    return parse_profile(_read_json(p), where=str(p))


# ------------------------------------------------------------------------------ catalog
def _norm(name: str) -> str:
    """Alias matching ignores case, spaces, dashes, underscores and vendor prefixes."""
    key = re.sub(r"[^a-z0-9.]", "", name.lower())
    for prefix in ("nvidia", "amd", "instinct", "tesla", "geforce"):
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix):]
    return key


def _builtin_profile_paths() -> list[Path]:
    folder = resources.files("shapewise.profiles")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".json"))


def _user_profile_paths() -> list[Path]:
    paths: list[Path] = []
    for folder in filter(None, os.environ.get("SHAPEWISE_PROFILES", "").split(os.pathsep)):
        d = Path(folder)
        if not d.is_dir():
            raise InputError(f"SHAPEWISE_PROFILES: {folder} is not a folder")
        paths.extend(sorted(d.glob("*.json")))
    return paths


@cache
def _catalog(user_dirs: str) -> tuple[dict[str, GPU], dict[str, str]]:
    """(id -> GPU, normalised alias -> id). User profiles override built-ins of the same id."""
    del user_dirs  # the cache key: SHAPEWISE_PROFILES as it was when loaded
    gpus: dict[str, GPU] = {}
    for path in [*_builtin_profile_paths(), *_user_profile_paths()]:
        gpu = load_profile(path)
        gpus[gpu.id] = gpu
    index: dict[str, str] = {}
    for gpu in gpus.values():
        for alias in (gpu.id, gpu.name, *gpu.aliases):
            index.setdefault(_norm(alias), gpu.id)
    # ids and names win over other profiles' aliases
    for gpu in gpus.values():
        index[_norm(gpu.id)] = gpu.id
    return gpus, index


def list_gpus() -> list[GPU]:
    """Every GPU in the catalog (built-in and ``SHAPEWISE_PROFILES``), sorted by id."""
    gpus, _ = _catalog(os.environ.get("SHAPEWISE_PROFILES", ""))
    return [gpus[k] for k in sorted(gpus)]


def get_gpu(name: str | GPU, *, field_name: str = "gpu") -> GPU:
    """Look a GPU up by id, name or alias, case-insensitively (``'h100'``, ``'A100-80GB'``).

    A :class:`GPU` passes through unchanged; a path to a ``.json`` file is loaded as a
    profile. An unknown name raises :class:`InputError` listing the closest names.
    """
    if isinstance(name, GPU):
        return name
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{field_name}: expected a GPU name such as 'h100', got {name!r}")
    if name.endswith(".json") and Path(name).is_file():
        return load_profile(name)
    gpus, index = _catalog(os.environ.get("SHAPEWISE_PROFILES", ""))
    gid = index.get(_norm(name))
    if gid is not None:
        return gpus[gid]
    close = difflib.get_close_matches(_norm(name), list(index), n=5, cutoff=0.5)
    names = sorted({index[c] for c in close}) or sorted(gpus)[:8]
    raise InputError(
        f"{field_name}: unknown GPU {name!r}; closest: {', '.join(names)} "
        "(see 'shapewise gpus' for all)"
    )


def gpu_to_dict(gpu: GPU) -> dict[str, Any]:
    """The profile as JSON-ready data (the inverse of :func:`parse_profile`)."""
    out: dict[str, Any] = {
        "schema_version": gpu.schema_version,
        "id": gpu.id,
        "name": gpu.name,
        "vendor": gpu.vendor,
        "arch": gpu.arch,
        "arch_code": gpu.arch_code,
        "aliases": list(gpu.aliases),
        "sm_count": gpu.sm_count,
        "boost_clock_mhz": gpu.boost_clock_mhz,
        "peak_tflops": dict(gpu.peak_tflops),
        "memory_gb": gpu.memory_gb,
        "memory_bandwidth_tbs": gpu.memory_bandwidth_tbs,
        "l2_mb": gpu.l2_mb,
        "smem_per_sm_kb": gpu.smem_per_sm_kb,
        "warp_size": gpu.warp_size,
        "matrix_instruction": gpu.matrix_instruction,
        "alignment_bytes": gpu.alignment_bytes,
        "gemm_tiles": [list(t) for t in gpu.gemm_tiles],
        "attention_tiles": {str(k): list(v) for k, v in sorted(gpu.attention_tiles.items())},
        "link_name": gpu.link_name,
        "link_bandwidth_gbs": gpu.link_bandwidth_gbs,
        "tdp_w": gpu.tdp_w,
        "ctas_per_sm": gpu.ctas_per_sm,
        "sources": dict(gpu.sources),
        "references": dict(gpu.references),
        "notes": gpu.notes,
    }
    if gpu.tdp_w is None:
        del out["tdp_w"]
    if gpu.calibration is not None:
        out["calibration"] = calibration_to_dict(gpu.calibration)
    return out


def calibration_to_dict(cal: Calibration) -> dict[str, Any]:
    return {
        "status": cal.status,
        "gemm_efficiency": dict(cal.gemm_efficiency),
        "launch_us": cal.launch_us,
        "k_fill": cal.k_fill,
        "bandwidth_efficiency": cal.bandwidth_efficiency,
        "misalign_16b_factor": cal.misalign_16b_factor,
        "misalign_coarse_factor": cal.misalign_coarse_factor,
        "tile_reuse_cost": cal.tile_reuse_cost,
        "attention_fwd_efficiency": cal.attention_fwd_efficiency,
        "attention_bwd_efficiency": cal.attention_bwd_efficiency,
        "overlap_penalty": cal.overlap_penalty,
        **({"attention_backends": {k: dict(v) for k, v in cal.attention_backends.items()}}
           if cal.attention_backends else {}),
        "provenance": dict(cal.provenance),
    }
