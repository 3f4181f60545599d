"""Systems: a GPU profile plus the node and networks it trains in.

A :class:`System` is what a collective runs on: ``gpus_per_node`` GPUs of one catalog
profile, joined by a scale-up link (NVLink through NVSwitch, xGMI/Infinity Fabric) inside a
scale-up domain, and by scale-out NICs (InfiniBand, RoCE, Slingshot) between domains. Each
figure cites its source; the cost-model parameters of each fabric (``calibration``) say
whether they were fitted to public nccl-tests/rccl-tests results and on which rows.

Systems ship as JSON in ``profiles/systems/`` (installed as ``shapewise/profiles/systems``);
users add their own through ``SHAPEWISE_SYSTEMS`` (folders separated by ``os.pathsep``) or
load one by path. Like GPU profiles they are data, parsed strictly: an unknown field, a
missing source, a NaN or a negative bandwidth is an :class:`InputError` naming the file and
field.

Names. :func:`get_system` takes a system id or alias (``"dgx-h100"``, ``"frontier"``) or a
GPU name, which maps to the usual node of that GPU (the system whose ``default_for`` lists
the GPU's id):

=================================  ==============================================
GPU                                system
=================================  ==============================================
a100-sxm-80gb, a100-sxm-40gb       ``hgx-a100`` (DGX/HGX A100, 8 GPUs, NVSwitch)
h100-sxm                           ``hgx-h100`` (DGX/HGX H100, 8 GPUs, NVSwitch)
h200                               ``hgx-h200`` (DGX/HGX H200, 8 GPUs, NVSwitch)
b200                               ``hgx-b200`` (DGX/HGX B200, 8 GPUs, NVSwitch)
gb200                              ``gb200-nvl72`` (72 GPUs in one NVLink domain)
mi300x                             ``mi300x-8`` (8 OAM, xGMI full mesh)
mi250x-gcd, and the name mi250x    ``frontier`` (4 MI250X = 8 GCDs per node)
=================================  ==============================================
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from shapewise._io import read_json
from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU, _norm, get_gpu

SCHEMA_VERSION = 1
MAX_SYSTEM_BYTES = 1024 * 1024

Topology = Literal["switch", "direct"]
_TOPOLOGIES = ("switch", "direct")


@dataclass(frozen=True, slots=True, kw_only=True)
class FabricCalibration:
    """Cost-model parameters of one fabric (see docs/cost-model.md, "Collectives").

    A collective step on the fabric costs ``alpha_us``; its bytes move at
    ``bandwidth · peak_fraction / (1 + (half_size_bytes / size) ** RAMP_EXPONENT)``.
    """

    alpha_us: float
    """latency of one algorithm step (one hop of a ring or tree), microseconds"""
    peak_fraction: float
    """share of the wire bandwidth a large collective achieves (0 < x <= 1)"""
    half_size_bytes: float
    """message size at which the bandwidth reaches half of ``peak_fraction`` (protocol,
    channel and pipeline ramp-up)"""
    nvls_peak_fraction: float | None = None
    """NVLink SHARP (NVLS) all-reduce: share of the wire bandwidth it achieves (scale-up
    switches with in-network reduction only; None: not modelled for this fabric)"""
    nvls_latency_us: float | None = None
    """NVLS all-reduce: its fixed latency, microseconds (it runs only NCCL's Simple
    protocol and synchronises through the switch, so NCCL keeps the ring for small sizes)"""
    status: Literal["fitted", "default"] = "default"
    """"fitted" to the measurements that ``provenance`` names, or a labelled default"""
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleUp:
    """The link between GPUs of one scale-up domain (NVLink/NVSwitch, xGMI)."""

    name: str
    fabric: str
    """fabric family, the key its calibration is fitted under (e.g. 'nvlink4', 'xgmi3')"""
    bandwidth_gbs: float
    """per GPU per direction, GB/s (1e9 bytes/s), all links together"""
    latency_us: float
    """hardware latency of one hop, microseconds"""
    domain_size: int
    """GPUs that reach each other over this link (8 on HGX, 72 on GB200 NVL72)"""
    topology: Topology
    """'switch': every GPU reaches any other at ``bandwidth_gbs`` (NVSwitch); 'direct':
    point-to-point links, so a group of k GPUs gets at most (k−1)·``link_bandwidth_gbs``"""
    link_bandwidth_gbs: float | None = None
    """one direct GPU-to-GPU link (or link bundle), per direction, GB/s ('direct' only)"""
    in_network_reduction: bool = False
    """the switches reduce in the network (NVLink SHARP, used by NCCL's NVLS algorithm)"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleOut:
    """The network between scale-up domains (InfiniBand, RoCE, Slingshot)."""

    nic: str
    fabric: str
    """fabric family, the key its calibration is fitted under (e.g. 'ib-ndr')"""
    nics_per_gpu: float
    """NICs per GPU (0.5 when two GPUs share one, as Frontier's GCDs do)"""
    bandwidth_gbs: float
    """per GPU per direction, GB/s (line rate of its share of the NICs)"""
    latency_us: float
    """hardware latency of one network hop, microseconds"""


@dataclass(frozen=True, slots=True, kw_only=True)
class System:
    """A GPU in its node: scale-up link and domain, scale-out network, sources."""

    id: str
    name: str
    gpu: GPU
    """the GPU profile from the catalog (what one process sees: one GCD on MI250X)"""
    gpus_per_node: int
    scale_up: ScaleUp
    scale_out: ScaleOut
    calibration: Mapping[str, FabricCalibration]
    """'scale_up' and 'scale_out': the collective model's parameters of each fabric"""
    aliases: tuple[str, ...] = ()
    default_for: tuple[str, ...] = ()
    """GPU ids whose usual node this is (``get_system('h100')`` finds it)"""
    sources: Mapping[str, str] = field(default_factory=dict, repr=False)
    references: Mapping[str, str] = field(default_factory=dict, repr=False)
    notes: str = field(default="", repr=False)
    path: str = field(default="", repr=False)

    @property
    def domain_size(self) -> int:
        """GPUs in one scale-up domain."""
        return self.scale_up.domain_size

    def __str__(self) -> str:
        return (f"{self.name}: {self.gpus_per_node} × {self.gpu.id} per node, "
                f"{self.scale_up.name} {self.scale_up.bandwidth_gbs:g} GB/s/GPU "
                f"(domain {self.scale_up.domain_size}), {self.scale_out.nic} "
                f"{self.scale_out.bandwidth_gbs:g} GB/s/GPU")


# ------------------------------------------------------------------------------- parsing
# Every spec value needs a source: these keys must appear in "sources".
_SOURCED = (
    "gpus_per_node", "scale_up.bandwidth_gbs", "scale_up.latency_us", "scale_up.domain_size",
    "scale_out.nic", "scale_out.bandwidth_gbs", "scale_out.latency_us",
)
_TOP = {"schema_version", "id", "name", "gpu", "aliases", "default_for", "gpus_per_node",
        "scale_up", "scale_out", "calibration", "sources", "references", "notes"}
_UP = {"name", "fabric", "bandwidth_gbs", "latency_us", "domain_size", "topology",
       "link_bandwidth_gbs", "in_network_reduction"}
_OUT = {"nic", "fabric", "nics_per_gpu", "bandwidth_gbs", "latency_us"}
_CAL = {"alpha_us", "peak_fraction", "half_size_bytes", "nvls_peak_fraction",
        "nvls_latency_us", "status", "provenance"}


class _Fields:
    """Typed reads from one JSON object; every error names the file and the dotted field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, name: str, problem: str) -> InputError:
        return InputError(f"{self.where}: field '{name}' {problem}")

    def obj(self, raw: Any, name: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.fail(name, f"must be an object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - allowed, key=str)
        if unknown:
            prefix = f"{name}." if name else ""
            raise self.fail(f"{prefix}{str(unknown[0])[:60]}", "is not a known field (typo?)")
        return raw

    def number(self, raw: Mapping[str, Any], key: str, name: str, *, at_most: float = 1e15,
               allow_zero: bool = False, required: bool = True) -> float | None:
        if key not in raw:
            if required:
                raise self.fail(name, "is missing")
            return None
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"must be a number, got {type(value).__name__}")
        if isinstance(value, int) and abs(value) > 10**15:
            raise self.fail(name, "must be a finite number of sensible size")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise self.fail(name, "must be a finite number")
        if value < 0 or (value == 0 and not allow_zero):
            raise self.fail(name, f"must be {'non-negative' if allow_zero else 'positive'}, "
                            f"got {value:g}")
        if value > at_most:
            raise self.fail(name, f"must be at most {at_most:g}, got {value:g}")
        return value

    def integer(self, raw: Mapping[str, Any], key: str, name: str) -> int:
        value = self.number(raw, key, name)
        if isinstance(raw[key], float) or value != int(value):  # type: ignore[arg-type]
            raise self.fail(name, f"must be an integer, got {raw[key]!r:.60}")
        return int(value)  # type: ignore[arg-type]

    def string(self, raw: Mapping[str, Any], key: str, name: str, *, required: bool = True,
               choices: tuple[str, ...] | None = None) -> str:
        if key not in raw:
            if required:
                raise self.fail(name, "is missing")
            return ""
        value = raw[key]
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.fail(name, "must be a non-empty string")
        if choices is not None and value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, got {value!r:.60}")
        return value

    def strings(self, raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and _norm(v)
                                                  for v in value):
            raise self.fail(key, "must be a list of names (letters or digits)")
        return tuple(value)

    def flag(self, raw: Mapping[str, Any], key: str, name: str) -> bool:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, got {value!r:.60}")
        return value


def _parse_calibration(raw: Any, name: str, f: _Fields) -> FabricCalibration:
    raw = f.obj(raw, name, _CAL)
    provenance = raw.get("provenance", {})
    if not isinstance(provenance, dict):
        raise f.fail(f"{name}.provenance", "must be an object")
    try:  # free-form, but plain JSON with finite numbers
        json.dumps(provenance, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise f.fail(f"{name}.provenance", "must hold plain JSON data") from None
    return FabricCalibration(
        alpha_us=f.number(raw, "alpha_us", f"{name}.alpha_us", at_most=1e4),  # type: ignore[arg-type]
        peak_fraction=f.number(raw, "peak_fraction", f"{name}.peak_fraction",  # type: ignore[arg-type]
                               at_most=1.0),
        half_size_bytes=f.number(raw, "half_size_bytes", f"{name}.half_size_bytes",  # type: ignore[arg-type]
                                 allow_zero=True, at_most=1e12),
        nvls_peak_fraction=f.number(raw, "nvls_peak_fraction", f"{name}.nvls_peak_fraction",
                                    at_most=1.0, required=False),
        nvls_latency_us=f.number(raw, "nvls_latency_us", f"{name}.nvls_latency_us",
                                 at_most=1e4, required=False),
        status=f.string(raw, "status", f"{name}.status",  # type: ignore[arg-type]
                        choices=("fitted", "default")),
        provenance=provenance,
    )


def parse_system(raw: Any, *, where: str) -> System:
    """Validate a decoded system object and build its :class:`System` (errors name ``where``)."""
    f = _Fields(where)
    raw = f.obj(raw, "", _TOP)
    version = f.integer(raw, "schema_version", "schema_version")
    if version != SCHEMA_VERSION:
        raise f.fail("schema_version", f"is {version}; this shapewise reads {SCHEMA_VERSION}")
    sid = f.string(raw, "id", "id")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", sid):
        raise f.fail("id", f"must be lower-case letters, digits, '.', '_' or '-', got {sid!r:.60}")
    gpu_name = f.string(raw, "gpu", "gpu")
    try:
        gpu = get_gpu(gpu_name)
    except InputError as exc:
        raise f.fail("gpu", str(exc)) from None

    up = f.obj(raw.get("scale_up"), "scale_up", _UP)
    topology = f.string(up, "topology", "scale_up.topology", choices=_TOPOLOGIES)
    link = f.number(up, "link_bandwidth_gbs", "scale_up.link_bandwidth_gbs",
                    required=topology == "direct")
    scale_up = ScaleUp(
        name=f.string(up, "name", "scale_up.name"),
        fabric=f.string(up, "fabric", "scale_up.fabric"),
        bandwidth_gbs=f.number(up, "bandwidth_gbs", "scale_up.bandwidth_gbs"),  # type: ignore[arg-type]
        latency_us=f.number(up, "latency_us", "scale_up.latency_us", at_most=1e4),  # type: ignore[arg-type]
        domain_size=f.integer(up, "domain_size", "scale_up.domain_size"),
        topology=topology,  # type: ignore[arg-type]
        link_bandwidth_gbs=link,
        in_network_reduction=f.flag(up, "in_network_reduction",
                                    "scale_up.in_network_reduction"),
    )
    out = f.obj(raw.get("scale_out"), "scale_out", _OUT)
    scale_out = ScaleOut(
        nic=f.string(out, "nic", "scale_out.nic"),
        fabric=f.string(out, "fabric", "scale_out.fabric"),
        nics_per_gpu=f.number(out, "nics_per_gpu", "scale_out.nics_per_gpu"),  # type: ignore[arg-type]
        bandwidth_gbs=f.number(out, "bandwidth_gbs", "scale_out.bandwidth_gbs"),  # type: ignore[arg-type]
        latency_us=f.number(out, "latency_us", "scale_out.latency_us", at_most=1e4),  # type: ignore[arg-type]
    )
    gpus_per_node = f.integer(raw, "gpus_per_node", "gpus_per_node")
    if scale_up.domain_size < gpus_per_node:
        raise f.fail("scale_up.domain_size", f"({scale_up.domain_size}) must be at least "
                     f"gpus_per_node ({gpus_per_node})")
    if scale_up.domain_size % gpus_per_node:
        raise f.fail("scale_up.domain_size", f"({scale_up.domain_size}) must be a whole "
                     f"number of nodes of {gpus_per_node}")

    cal_raw = f.obj(raw.get("calibration"), "calibration", {"scale_up", "scale_out"})
    calibration = {}
    for key in ("scale_up", "scale_out"):
        if key not in cal_raw:
            raise f.fail(f"calibration.{key}", "is missing")
        calibration[key] = _parse_calibration(cal_raw[key], f"calibration.{key}", f)
    up_cal = calibration["scale_up"]
    if up_cal.nvls_peak_fraction is not None and not scale_up.in_network_reduction:
        raise f.fail("calibration.scale_up.nvls_peak_fraction",
                     "needs scale_up.in_network_reduction: true")
    if (up_cal.nvls_peak_fraction is None) != (up_cal.nvls_latency_us is None):
        raise f.fail("calibration.scale_up.nvls_latency_us",
                     "and nvls_peak_fraction come together (both or neither)")
    if calibration["scale_out"].nvls_peak_fraction is not None:
        raise f.fail("calibration.scale_out.nvls_peak_fraction",
                     "applies to the scale-up switches only")

    sources = f.obj(raw.get("sources"), "sources", set(raw.get("sources") or {}))
    references = raw.get("references", {})
    if not isinstance(references, dict):
        raise f.fail("references", "must be an object")
    for group, entries in (("sources", sources), ("references", references)):
        for key, value in entries.items():
            if not isinstance(value, str) or not value.strip():
                raise f.fail(f"{group}.{str(key)[:60]}", "must be a non-empty string")
    for key in _SOURCED:
        if key not in sources:
            raise f.fail(f"sources.{key}", "is missing: every spec value needs a source")
    if references:
        for key, value in sources.items():
            if value not in references:
                raise f.fail(f"sources.{key}", f"names {value!r:.60}, which is not a key of "
                             "'references'")
    return System(
        id=sid,
        name=f.string(raw, "name", "name"),
        gpu=gpu,
        gpus_per_node=gpus_per_node,
        scale_up=scale_up,
        scale_out=scale_out,
        calibration=calibration,
        aliases=f.strings(raw, "aliases"),
        default_for=f.strings(raw, "default_for"),
        sources=dict(sources),
        references=dict(references),
        notes=f.string(raw, "notes", "notes", required=False),
        path=where,
    )


def load_system(path: str | os.PathLike[str]) -> System:
    """Load and validate one system file (JSON only; nothing in it is executed)."""
    p = Path(path)
    return parse_system(read_json(p, limit=MAX_SYSTEM_BYTES, what="a system"), where=str(p))


# ------------------------------------------------------------------------------- catalog
def _builtin_paths() -> list[Path]:
    folder = resources.files("shapewise.profiles") / "systems"
    if not folder.is_dir():
        return []
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".json"))


def _user_paths() -> list[Path]:
    paths: list[Path] = []
    for folder in filter(None, os.environ.get("SHAPEWISE_SYSTEMS", "").split(os.pathsep)):
        d = Path(folder)
        if not d.is_dir():
            raise InputError(f"SHAPEWISE_SYSTEMS: {folder} is not a folder")
        paths.extend(sorted(d.glob("*.json")))
    return paths


@cache
def _catalog(key: tuple[str, str]) -> tuple[dict[str, System], dict[str, str], dict[str, str]]:
    """(id -> System, normalised alias -> id, GPU id -> system id); cached per env."""
    del key
    systems: dict[str, System] = {}
    for path in [*_builtin_paths(), *_user_paths()]:
        s = load_system(path)
        systems[s.id] = s
    index: dict[str, str] = {}
    for s in systems.values():
        for alias in (s.id, s.name, *s.aliases):
            index.setdefault(_norm(alias), s.id)
    for s in systems.values():
        index[_norm(s.id)] = s.id
    by_gpu: dict[str, str] = {}
    for s in sorted(systems.values(), key=lambda s: s.id):
        for gid in s.default_for:
            by_gpu.setdefault(gid, s.id)
    return systems, index, by_gpu


def _env() -> tuple[str, str]:
    return (os.environ.get("SHAPEWISE_SYSTEMS", ""), os.environ.get("SHAPEWISE_PROFILES", ""))


def list_systems() -> list[System]:
    """Every system (built-in and ``SHAPEWISE_SYSTEMS``), sorted by id."""
    systems, _, _ = _catalog(_env())
    return [systems[k] for k in sorted(systems)]


def default_system(gpu: str | GPU, *, field_name: str = "gpu") -> System | None:
    """The usual node of ``gpu`` (the system whose ``default_for`` lists it), or None."""
    g = get_gpu(gpu, field_name=field_name)
    systems, _, by_gpu = _catalog(_env())
    sid = by_gpu.get(g.id)
    return None if sid is None else systems[sid]


def get_system(name: str | System | GPU, *, field_name: str = "system") -> System:
    """A system by id or alias (``'dgx-h100'``, ``'frontier'``), or a GPU's usual node.

    A :class:`System` passes through; a GPU (name or :class:`GPU`) maps to the system whose
    ``default_for`` lists it (``'h100'`` → ``hgx-h100``; see the module doc for the table);
    a path to a ``.json`` file is loaded as a system. Unknown names raise
    :class:`InputError` listing the closest systems.
    """
    if isinstance(name, System):
        return name
    if isinstance(name, GPU):
        found = default_system(name)
        if found is None:
            raise InputError(f"{field_name}: no system ships for {name.id}; known: "
                             f"{', '.join(s.id for s in list_systems())}")
        return found
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{field_name}: expected a system or GPU name such as 'dgx-h100' or "
                         f"'h100', got {name!r:.60}")
    if name.endswith(".json") and Path(name).is_file():
        return load_system(name)
    systems, index, by_gpu = _catalog(_env())
    sid = index.get(_norm(name))
    if sid is not None:
        return systems[sid]
    try:
        gpu = get_gpu(name, field_name=field_name)
    except InputError:
        gpu = None
    if gpu is not None:
        if gpu.id in by_gpu:
            return systems[by_gpu[gpu.id]]
        raise InputError(f"{field_name}: no system ships for the GPU {gpu.id}; known: "
                         f"{', '.join(sorted(systems))} (or describe its node in a system "
                         "JSON, see profiles/README.md)")
    close = difflib.get_close_matches(_norm(name), list(index), n=5, cutoff=0.5)
    names = sorted({index[c] for c in close}) or sorted(systems)
    raise InputError(f"{field_name}: unknown system {name!r:.60}; closest: {', '.join(names)}")
