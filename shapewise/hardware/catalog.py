"""The accelerator catalog: one JSON profile per GPU, validated on load.

A profile holds datasheet facts (each with its source) and, optionally, a ``calibration``
block of cost-model parameters fitted to measurements (with provenance). Profiles ship in
``profiles/`` (installed as ``shapewise.profiles``); users add their own through
``SHAPEWISE_PROFILES`` (folders separated by ``os.pathsep``) or load one by path.

Profiles are data: parsed with ``json`` only, never executed; NaN, infinities, negative or
mistyped values are errors that name the file and the field. The fields of :class:`GPU` and
:class:`Calibration` are declared with :func:`shapewise.hardware.schema.schema`: parsing,
validation, the known keys, the sourced facts and :func:`gpu_to_dict` all derive from those
declarations, so a new profile field is one line there.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from shapewise._io import read_json
from shapewise.errors import InputError
from shapewise.hardware.schema import (
    Checker,
    Parser,
    citations,
    integer,
    json_object,
    named,
    nested,
    number,
    parse_document,
    plain_json,
    schema,
    schema_fields,
    short,
    string,
    to_dict,
    version,
)

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


# ---------------------------------------------- parsers of the GPU profile's own kinds
def _per_dtype(*, at_most: float | None = None) -> Parser:
    """{dtype: number}, naming at least one dtype the cost model knows."""
    read_number = number(at_most=at_most)

    def parse(value: Any, check: Checker, name: str) -> dict[str, float]:
        if not json_object(value, check, name):
            raise check.fail(name, "must name at least one dtype")
        out = {}
        for key, item in value.items():
            if key not in DTYPE_BYTES:
                raise check.fail(f"{name}.{short(key)}",
                                 f"is not a known dtype ({', '.join(DTYPE_BYTES)})")
            out[key] = read_number(item, check, f"{name}.{key}")
        return out

    return parse


def _tile(value: Any, check: Checker, name: str) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 4096
                       for v in value)):
        raise check.fail(name, f"must be [rows, cols] of positive integers, got {short(value)}")
    return (value[0], value[1])


def _tiles(value: Any, check: Checker, name: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list) or not value:
        raise check.fail(name, "must be a non-empty list of [rows, cols]")
    return tuple(_tile(t, check, f"{name}[{i}]") for i, t in enumerate(value))


def _tiles_per_head_dim(value: Any, check: Checker, name: str) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for key, tile in json_object(value, check, name).items():
        # ASCII digits only: str.isdigit() accepts '²', which int() then rejects
        if not isinstance(key, str) or not re.fullmatch(r"[0-9]{1,3}", key) \
                or not 0 < int(key) <= 512:
            raise check.fail(f"{name}.{short(key)}", "key must be a head dim (integer string)")
        out[int(key)] = _tile(tile, check, f"{name}.{key}")
    if not out:
        raise check.fail(name, "must name at least one head dim")
    return out


def _aliases(value: Any, check: Checker, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise check.fail(name, "must be a list of strings")
    for i, alias in enumerate(value):
        if not _norm(alias):  # '' or '---' would match nothing, or everything typed as ''
            raise check.fail(f"{name}[{i}]", f"must contain a letter or digit, got {alias!r:.60}")
    return tuple(value)


_fraction = number(at_most=1.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """Cost-model parameters of one GPU (see docs/cost-model.md for each equation).

    ``status`` is "fitted" when the numbers were fitted to measurements (``provenance`` says
    which), "default" when they are the cross-GPU defaults of ``shapewise.cost.defaults``.
    """

    status: Literal["fitted", "default"] = schema(string(choices=("fitted", "default")))
    gemm_efficiency: Mapping[str, float] = schema(_per_dtype(at_most=1.0), dump=dict)
    """fraction of the dense peak a GEMM main loop sustains, per dtype (0 < x <= 1)"""
    launch_us: float = schema(number(allow_zero=True, at_most=1e4))
    """fixed time per kernel launch (as the kernel timer sees it), microseconds"""
    k_fill: float = schema(number(allow_zero=True, at_most=1e5))
    """pipeline fill/drain of one CTA tile, in K elements of extra main-loop work"""
    bandwidth_efficiency: float = schema(_fraction)
    """fraction of the memory bandwidth a streaming kernel sustains"""
    misalign_16b_factor: float = schema(_fraction)
    """throughput factor when a GEMM dim is not a multiple of 16 bytes (no vector loads)"""
    misalign_coarse_factor: float = schema(_fraction)
    """throughput factor when 16-byte but not ``alignment_bytes`` aligned"""
    tile_reuse_cost: float = schema(number(allow_zero=True, at_most=100.0))
    """operand-reuse cost of small tiles (0: tile size does not matter)"""
    attention_fwd_efficiency: float = schema(_fraction)
    """FlashAttention forward main-loop efficiency (fraction of dense peak)"""
    attention_bwd_efficiency: float = schema(_fraction)
    """FlashAttention backward main-loop efficiency (fraction of dense peak)"""
    overlap_penalty: float = schema(number(allow_zero=True, at_most=1.0), default=0.0)
    """share of the shorter of compute and memory time that does not overlap the longer
    (0: perfect overlap, as GPU kernels stream operands under the math; ~1 on CPUs,
    where BLAS packs operands before computing)"""
    provenance: Mapping[str, Any] = schema(plain_json, dump=dict, default_factory=dict)
    """where the numbers come from: data files, dates, method, errors"""
    attention_decode: Mapping[str, float] = schema(
        named(number(allow_zero=True, at_most=1e4)), dump=dict, omit_empty=True,
        default_factory=dict)
    """the decode / short-query attention model's fitted parameters
    (``shapewise.cost.attention_decode.DECODE_KEYS``); absent: its priors"""
    attention_backends: Mapping[str, Mapping[str, float]] = schema(
        named(named(number(allow_zero=True, at_most=1e4))),
        dump=lambda v: {k: dict(p) for k, p in v.items()}, omit_empty=True,
        default_factory=dict)
    """per attention backend (``shapewise.cost.attention.BACKENDS``) its fitted parameters,
    e.g. {"cudnn": {"fwd_efficiency": 0.8, "bwd_efficiency": 0.57}}; a backend absent here
    is priced with the priors of ``shapewise.cost.defaults``"""

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
    """One accelerator: datasheet facts with sources, plus cost-model calibration.

    The fields declared with ``schema`` are the profile's JSON keys, in the order
    :func:`gpu_to_dict` writes them.
    """

    schema_version: int = schema(version(SCHEMA_VERSION), default=SCHEMA_VERSION, repr=False)
    id: str = schema(string(pattern=r"[a-z0-9][a-z0-9._-]*"))
    """file stem, e.g. 'h100-sxm' (lower-case letters, digits, '.', '_' or '-')"""
    name: str = schema(string())
    """marketing name, e.g. 'NVIDIA H100 SXM5 80GB'"""
    vendor: Vendor = schema(string(choices=_VENDORS))
    arch: str = schema(string())
    """architecture family, e.g. 'hopper', 'cdna3'"""
    arch_code: str = schema(string())
    """compute capability or gfx target, e.g. 'sm_90', 'gfx942'"""
    aliases: tuple[str, ...] = schema(_aliases, dump=list, default=())
    sm_count: int = schema(integer, sourced=True)
    """streaming multiprocessors (NVIDIA) or compute units (AMD)"""
    boost_clock_mhz: float = schema(number(), sourced=True)
    peak_tflops: Mapping[str, float] = schema(_per_dtype(), dump=dict, sourced=True)
    """dense (no 2:4 sparsity) peak per dtype, TFLOP/s; 'fp32' is the best full-precision
    FP32 GEMM rate (AMD CDNA: the matrix cores)"""
    memory_gb: float = schema(number(), sourced=True)
    memory_bandwidth_tbs: float = schema(number(), sourced=True)
    """HBM/GDDR bandwidth, TB/s (1e12 bytes/s)"""
    l2_mb: float = schema(number(allow_zero=True), sourced=True)
    smem_per_sm_kb: float = schema(number(), sourced=True)
    warp_size: int = schema(integer, sourced=True)
    matrix_instruction: str = schema(string(), sourced=True)
    alignment_bytes: int = schema(integer, sourced=True)
    """tensor cores are fully fed when m, n, k are multiples of this many bytes"""
    gemm_tiles: tuple[tuple[int, int], ...] = schema(
        _tiles, dump=lambda tiles: [list(t) for t in tiles], sourced=True)
    """CTA output tiles (BM, BN) that the vendor BLAS picks from"""
    attention_tiles: Mapping[int, tuple[int, int]] = schema(
        _tiles_per_head_dim, dump=lambda t: {str(k): list(v) for k, v in sorted(t.items())},
        sourced=True)
    """FlashAttention forward block (BlockM, BlockN) per head dim"""
    link_name: str = schema(string(), default="")
    link_bandwidth_gbs: float = schema(number(allow_zero=True), sourced=True)
    """scale-up link bandwidth per GPU per direction, GB/s (0: no scale-up link)"""
    tdp_w: float | None = schema(number(), sourced=True, default=None)
    sustained_clock: float | None = schema(number(at_most=1.0), default=None)
    """share of its microbenchmarked math rate the GPU sustains through a long training
    run (power and thermal limits); None: not known (1.0 is used). Fitted, not a datasheet
    fact: ``sustained_clock_source`` says on what"""
    sustained_clock_source: str = schema(string(), default="", repr=False)
    ctas_per_sm: int = schema(integer, default=1)
    sources: Mapping[str, str] = schema(citations, dump=dict, repr=False)
    """spec field -> key of ``references`` (or a citation of its own when there are none)"""
    references: Mapping[str, str] = schema(citations, dump=dict, default_factory=dict,
                                           repr=False)
    notes: str = schema(string(), default="", repr=False)
    calibration: Calibration | None = schema(nested(Calibration), dump=lambda c: to_dict(c),
                                             default=None, repr=False)
    path: str = field(default="", repr=False)
    """the file it was loaded from (not a profile field)"""

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


#: spec fields that must each name a source in the profile's "sources" mapping
_SOURCED_FIELDS = tuple(name for name, spec, _ in schema_fields(GPU) if spec.sourced)


# -------------------------------------------------------------------- parsing and checks
def _read_json(path: Path) -> Any:
    return read_json(path, limit=MAX_PROFILE_BYTES, what="a profile")


def parse_profile(raw: Any, *, where: str) -> GPU:
    """Validate a decoded profile object and build its :class:`GPU`.

    ``where`` names the source (a path) in every error message.
    """
    check = Checker(where)
    kwargs = parse_document(GPU, raw, check, what="a profile")
    sources, references = kwargs["sources"], kwargs.get("references", {})
    for name in _SOURCED_FIELDS:  # every datasheet value present needs its source
        if kwargs.get(name) is not None and name not in sources:
            raise check.fail(f"sources.{name}", "is missing: every spec value needs a source")
    if references:  # then each source is a key into references, not a citation of its own
        for key, value in sources.items():
            if value not in references:
                raise check.fail(f"sources.{short(key)}",
                                 f"names {short(value)!r}, which is not a key of 'references'")
    return GPU(**kwargs, path=where)


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


def builtin_profiles_folder() -> Any:
    """The shipped profiles, ``shapewise.profiles`` (``profiles/`` of the repository: the
    install maps it in; a source checkout finds it through ``shapewise.__path__``)."""
    return resources.files("shapewise.profiles")


def _builtin_profile_paths(subfolder: str = "") -> list[Path]:
    folder = builtin_profiles_folder()
    if subfolder:
        folder = folder / subfolder
        if not folder.is_dir():
            return []
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".json"))


def profile_paths(env_var: str, subfolder: str = "") -> list[Path]:
    """The shipped profiles (``profiles/`` or its ``subfolder``), then the ``*.json`` of each
    folder that ``env_var`` names (separated by ``os.pathsep``): later ones override."""
    paths = _builtin_profile_paths(subfolder)
    for folder in filter(None, os.environ.get(env_var, "").split(os.pathsep)):
        d = Path(folder)
        if not d.is_dir():
            raise InputError(f"{env_var}: {folder} is not a folder")
        paths.extend(sorted(d.glob("*.json")))
    return paths


def load_catalog(load: Callable[[Path], Any], env_var: str, subfolder: str = ""
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """(id -> profile, normalised alias -> id) of every profile :func:`profile_paths` lists,
    each read by ``load``. A later file overrides an earlier one of the same id (users'
    over the shipped ones); ids win over other profiles' aliases."""
    items: dict[str, Any] = {}
    for path in profile_paths(env_var, subfolder):
        item = load(path)
        items[item.id] = item
    index: dict[str, str] = {}
    for item in items.values():
        for alias in (item.id, item.name, *item.aliases):
            index.setdefault(_norm(alias), item.id)
    for item in items.values():
        index[_norm(item.id)] = item.id
    return items, index


@cache
def _catalog(user_dirs: str) -> tuple[dict[str, GPU], dict[str, str]]:
    """(id -> GPU, normalised alias -> id). User profiles override built-ins of the same id."""
    del user_dirs  # the cache key: SHAPEWISE_PROFILES as it was when loaded
    return load_catalog(load_profile, "SHAPEWISE_PROFILES")


#: Parts software never sees as one device. An MI250X is two GCDs, each its own 64 GB GPU
#: (OLCF Frontier User Guide: "8 separate GPUs" per node of 4 MI250X): a 128 GB one misleads.
_NOT_ONE_DEVICE = {
    _norm(n): ("is two GPUs (GCDs) of 64 GB each, never one 128 GB device: use "
               "'mi250x-gcd' for the GPU one process sees (or the system 'frontier')")
    for n in ("mi250x", "amd instinct mi250x", "mi250x-oam", "mi250x module")
}


#: Asked when no GPU matches; hardware.system registers "a system (name) means its GPU".
GPU_RESOLVERS: list[Callable[[Any], GPU | None]] = []


def list_gpus() -> list[GPU]:
    """Every GPU in the catalog (built-in and ``SHAPEWISE_PROFILES``), sorted by id."""
    gpus, _ = _catalog(os.environ.get("SHAPEWISE_PROFILES", ""))
    return [gpus[k] for k in sorted(gpus)]


def get_gpu(name: Any, *, field_name: str = "gpu") -> GPU:
    """Look a GPU up by id, name or alias, case-insensitively (``'h100'``, ``'A100-80GB'``).

    A :class:`GPU` passes through unchanged; a path to a ``.json`` file is loaded as a
    profile; a system (a :class:`~shapewise.hardware.system.System` or a system name such
    as ``'dgx-h100'``) means its GPU. An unknown name raises :class:`InputError` listing the
    closest names.
    """
    if isinstance(name, GPU):
        return name
    try:
        return _catalog_gpu(name, field_name=field_name)
    except InputError:
        if isinstance(name, str) and _norm(name) in _NOT_ONE_DEVICE:
            raise
        for resolve in GPU_RESOLVERS:  # the system catalog: a system means its GPU
            if (found := resolve(name)) is not None:
                return found
        raise


def _catalog_gpu(name: Any, *, field_name: str = "gpu") -> GPU:
    """A catalog GPU by id, name, alias or profile path (no system names)."""
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
    if _norm(name) in _NOT_ONE_DEVICE:
        raise InputError(f"{field_name}: {name!r:.60} {_NOT_ONE_DEVICE[_norm(name)]}")
    close = difflib.get_close_matches(_norm(name), list(index), n=5, cutoff=0.5)
    names = sorted({index[c] for c in close}) or sorted(gpus)[:8]
    raise InputError(
        f"{field_name}: unknown GPU {name!r}; closest: {', '.join(names)} "
        "(see 'shapewise gpus' for all)"
    )


def gpu_to_dict(gpu: GPU) -> dict[str, Any]:
    """The profile as JSON-ready data (the inverse of :func:`parse_profile`)."""
    return to_dict(gpu)


def calibration_to_dict(cal: Calibration) -> dict[str, Any]:
    return to_dict(cal)
