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
mi325x                             ``mi325x-8`` (the same platform with MI325X)
mi250x-gcd, and the name mi250x    ``frontier`` (4 MI250X = 8 GCDs per node)
=================================  ==============================================
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from shapewise._io import read_json
from shapewise.errors import InputError
from shapewise.hardware.catalog import (
    GPU,
    GPU_RESOLVERS,
    _aliases,
    _catalog_gpu,
    _norm,
    get_gpu,
    load_catalog,
)
from shapewise.hardware.schema import Checker as _Checker
from shapewise.hardware.schema import citations as _citations
from shapewise.hardware.schema import integer as _integer
from shapewise.hardware.schema import nested as _nested
from shapewise.hardware.schema import number as _number
from shapewise.hardware.schema import parse_document, schema, version
from shapewise.hardware.schema import plain_json as _plain_json
from shapewise.hardware.schema import schema_fields as _schema_fields
from shapewise.hardware.schema import short as _short
from shapewise.hardware.schema import string as _string
from shapewise.hardware.schema import to_dict as _to_dict

# A system's JSON schema is declared like a GPU profile's: each field states in its
# dataclass metadata how it is read, validated and written back (shapewise.hardware.schema).
SCHEMA_VERSION = 1
MAX_SYSTEM_BYTES = 1024 * 1024

Topology = Literal["switch", "direct"]
_TOPOLOGIES = ("switch", "direct")
_fraction = _number(at_most=1.0)
_latency = _number(at_most=1e4)


def _flag(value: Any, check: _Checker, name: str) -> bool:
    if not isinstance(value, bool):
        raise check.fail(name, f"must be true or false, got {_short(value)}")
    return value


def _name(value: Any, check: _Checker, name: str) -> str:
    text = _string()(value, check, name)
    if not text.strip():
        raise check.fail(name, "must be a non-empty string")
    return text


def _gpu(value: Any, check: _Checker, name: str) -> GPU:
    try:  # a catalog GPU only: a system name here would recurse into this catalog
        return _catalog_gpu(_name(value, check, name))
    except InputError as exc:
        raise check.fail(name, str(exc)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class FabricCalibration:
    """Cost-model parameters of one fabric (see docs/cost-model.md, "Collectives").

    A collective step on the fabric costs ``alpha_us``; its bytes move at
    ``bandwidth · peak_fraction / (1 + (half_size_bytes / size) ** RAMP_EXPONENT)``.
    """

    alpha_us: float = schema(_latency)
    """latency of one algorithm step (one hop of a ring or tree), microseconds"""
    peak_fraction: float = schema(_fraction)
    """share of the wire bandwidth a large collective achieves (0 < x <= 1)"""
    half_size_bytes: float = schema(_number(allow_zero=True, at_most=1e12))
    """message size at which the bandwidth reaches half of ``peak_fraction`` (protocol,
    channel and pipeline ramp-up)"""
    nvls_peak_fraction: float | None = schema(_fraction, default=None)
    """NVLink SHARP (NVLS) all-reduce: share of the wire bandwidth it achieves (scale-up
    switches with in-network reduction only; None: not modelled for this fabric)"""
    nvls_latency_us: float | None = schema(_latency, default=None)
    """NVLS all-reduce: its fixed latency, microseconds (it runs only NCCL's Simple
    protocol and synchronises through the switch, so NCCL keeps the ring for small sizes)"""
    status: Literal["fitted", "default"] = schema(_string(choices=("fitted", "default")),
                                                  default="default")
    """"fitted" to the measurements that ``provenance`` names, or a labelled default"""
    provenance: Mapping[str, Any] = schema(_plain_json, dump=dict, default_factory=dict,
                                           repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleUp:
    """The link between GPUs of one scale-up domain (NVLink/NVSwitch, xGMI)."""

    name: str = schema(_name)
    fabric: str = schema(_name)
    """fabric family, the key its calibration is fitted under (e.g. 'nvlink4', 'xgmi-mi300')"""
    bandwidth_gbs: float = schema(_number(), sourced=True)
    """per GPU per direction, GB/s (1e9 bytes/s), all links together"""
    latency_us: float = schema(_latency, sourced=True)
    """hardware latency of one hop, microseconds"""
    domain_size: int = schema(_integer, sourced=True)
    """GPUs that reach each other over this link (8 on HGX, 72 on GB200 NVL72)"""
    topology: Topology = schema(_string(choices=_TOPOLOGIES))
    """'switch': every GPU reaches any other at ``bandwidth_gbs`` (NVSwitch); 'direct':
    point-to-point links, so a group of k GPUs gets at most (k−1)·``link_bandwidth_gbs``"""
    link_bandwidth_gbs: float | None = schema(_number(), sourced=True, default=None)
    """one direct GPU-to-GPU link (or link bundle), per direction, GB/s ('direct' only)"""
    in_network_reduction: bool = schema(_flag, default=False)
    """the switches reduce in the network (NVLink SHARP, used by NCCL's NVLS algorithm)"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleOut:
    """The network between scale-up domains (InfiniBand, RoCE, Slingshot)."""

    nic: str = schema(_name, sourced=True)
    fabric: str = schema(_name)
    """fabric family, the key its calibration is fitted under (e.g. 'ib-ndr')"""
    nics_per_gpu: float = schema(_number())
    """NICs per GPU (0.5 when two GPUs share one, as Frontier's GCDs do)"""
    bandwidth_gbs: float = schema(_number(), sourced=True)
    """per GPU per direction, GB/s (line rate of its share of the NICs)"""
    latency_us: float = schema(_latency, sourced=True)
    """hardware latency of one network hop, microseconds"""


def _calibrations(value: Any, check: _Checker, name: str) -> dict[str, FabricCalibration]:
    if not isinstance(value, dict):
        raise check.fail(name, f"must be an object, got {type(value).__name__}")
    for key in value:
        if key not in ("scale_up", "scale_out"):
            raise check.fail(f"{name}.{_short(key)}", "is not a known field (typo?)")
    out = {}
    for key in ("scale_up", "scale_out"):
        if key not in value:
            raise check.fail(f"{name}.{key}", "is missing")
        out[key] = _nested(FabricCalibration)(value[key], check, f"{name}.{key}")
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class System:
    """A GPU in its node: scale-up link and domain, scale-out network, sources.

    The fields declared with ``schema`` are the system JSON's keys.
    """

    schema_version: int = schema(version(SCHEMA_VERSION), default=SCHEMA_VERSION, repr=False)
    id: str = schema(_string(pattern=r"[a-z0-9][a-z0-9._-]*"))
    name: str = schema(_name)
    gpu: GPU = schema(_gpu, dump=lambda g: g.id)
    """the GPU profile from the catalog (what one process sees: one GCD on MI250X)"""
    aliases: tuple[str, ...] = schema(_aliases, dump=list, default=())
    default_for: tuple[str, ...] = schema(_aliases, dump=list, default=())
    """GPU ids whose usual node this is (``get_system('h100')`` finds it)"""
    gpus_per_node: int = schema(_integer, sourced=True)
    scale_up: ScaleUp = schema(_nested(ScaleUp), dump=_to_dict)
    scale_out: ScaleOut = schema(_nested(ScaleOut), dump=_to_dict)
    calibration: Mapping[str, FabricCalibration] = schema(
        _calibrations, dump=lambda c: {k: _to_dict(v) for k, v in c.items()})
    """'scale_up' and 'scale_out': the collective model's parameters of each fabric"""
    sources: Mapping[str, str] = schema(_citations, dump=dict, repr=False)
    """spec field (dotted: 'scale_up.bandwidth_gbs') -> key of ``references``"""
    references: Mapping[str, str] = schema(_citations, dump=dict, default_factory=dict,
                                           repr=False)
    notes: str = schema(_string(), default="", repr=False)
    path: str = field(default="", repr=False)
    """the file it was loaded from (not a system field)"""

    @property
    def domain_size(self) -> int:
        """GPUs in one scale-up domain."""
        return self.scale_up.domain_size

    def __str__(self) -> str:
        return (f"{self.name}: {self.gpus_per_node} × {self.gpu.id} per node, "
                f"{self.scale_up.name} {self.scale_up.bandwidth_gbs:g} GB/s/GPU "
                f"(domain {self.scale_up.domain_size}), {self.scale_out.nic} "
                f"{self.scale_out.bandwidth_gbs:g} GB/s/GPU")


def _sourced(cls: type, prefix: str = "") -> tuple[str, ...]:
    return tuple(prefix + name for name, spec, _ in _schema_fields(cls) if spec.sourced)


#: spec values that must each name a source ("sources" keys), when present
_SOURCED = (*_sourced(System), *_sourced(ScaleUp, "scale_up."),
            *_sourced(ScaleOut, "scale_out."))


def _value(system_kwargs: dict[str, Any], dotted: str) -> Any:
    head, _, tail = dotted.partition(".")
    value = system_kwargs.get(head)
    return getattr(value, tail) if tail and value is not None else value


def parse_system(raw: Any, *, where: str) -> System:
    """Validate a decoded system object and build its :class:`System` (errors name ``where``)."""
    check = _Checker(where)
    kw = parse_document(System, raw, check, what="a system")
    up, cal, gpn = kw["scale_up"], kw["calibration"], kw["gpus_per_node"]
    if up.topology == "direct" and up.link_bandwidth_gbs is None:
        raise check.fail("scale_up.link_bandwidth_gbs", "is missing: 'direct' links need it")
    if up.domain_size < gpn or up.domain_size % gpn:
        raise check.fail("scale_up.domain_size", f"({up.domain_size}) must be a whole number "
                         f"of nodes of gpus_per_node ({gpn})")
    up_cal = cal["scale_up"]
    if up_cal.nvls_peak_fraction is not None and not up.in_network_reduction:
        raise check.fail("calibration.scale_up.nvls_peak_fraction",
                         "needs scale_up.in_network_reduction: true")
    if (up_cal.nvls_peak_fraction is None) != (up_cal.nvls_latency_us is None):
        raise check.fail("calibration.scale_up.nvls_latency_us",
                         "and nvls_peak_fraction come together (both or neither)")
    if cal["scale_out"].nvls_peak_fraction is not None:
        raise check.fail("calibration.scale_out.nvls_peak_fraction",
                         "applies to the scale-up switches only")
    sources, references = kw["sources"], kw.get("references", {})
    for key in _SOURCED:  # every spec value present needs its source
        if _value(kw, key) is not None and key not in sources:
            raise check.fail(f"sources.{key}", "is missing: every spec value needs a source")
    if references:
        for key, value in sources.items():
            if value not in references:
                raise check.fail(f"sources.{_short(key)}",
                                 f"names {_short(value)!r}, which is not a key of 'references'")
    return System(**kw, path=where)


def system_to_dict(system: System) -> dict[str, Any]:
    """The system as JSON-ready data (the inverse of :func:`parse_system`)."""
    return _to_dict(system)


def load_system(path: str | os.PathLike[str]) -> System:
    """Load and validate one system file (JSON only; nothing in it is executed)."""
    p = Path(path)
    return parse_system(read_json(p, limit=MAX_SYSTEM_BYTES, what="a system"), where=str(p))


# ------------------------------------------------------------------------------- catalog
@cache
def _catalog(key: tuple[str, str]) -> tuple[dict[str, System], dict[str, str], dict[str, str]]:
    """(id -> System, normalised alias -> id, GPU id -> system id); cached per env."""
    del key
    systems, index = load_catalog(load_system, "SHAPEWISE_SYSTEMS", "systems")
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


def find_system(name: str) -> System | None:
    """The system whose id, name or alias is ``name`` (not a GPU name), or None."""
    systems, index, _ = _catalog(_env())
    sid = index.get(_norm(name))
    return None if sid is None else systems[sid]


def _gpu_of(name: Any) -> GPU | None:
    """A system (object or name) as a GPU argument: its GPU (registered in the catalog)."""
    if isinstance(name, System):
        return name.gpu
    found = find_system(name) if isinstance(name, str) and name.strip() else None
    return None if found is None else found.gpu


GPU_RESOLVERS.append(_gpu_of)


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
