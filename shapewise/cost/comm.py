"""Collectives: an alpha-beta model per algorithm, with a bandwidth that ramps with size.

Every collective is a few phases; a phase on fabric f (the scale-up link inside a domain,
or the scale-out NICs between domains) costs

    t_phase = steps · α_f + wire_bytes / (B · e_f(size)),
    e_f(s)  = η_f / (1 + (s½_f / s) ** RAMP_EXPONENT)

``wire_bytes`` is what each rank sends through its port in that phase, ``B`` the bandwidth
per GPU per direction of the fabric (from the :class:`~shapewise.hardware.system.System`),
η_f the share of it a large collective achieves (never 1: protocol headers, flags, chunk
pipelining and the reduction itself take their cut), s½_f the message size at which half
of that is reached (NCCL/RCCL pick fewer channels and the LL/LL128 protocols for small
messages), and α_f the latency of one algorithm step. The three numbers per fabric are
fitted to public nccl-tests/rccl-tests sweeps by ``scripts/fit_collectives.py``; each
system's JSON says which were fitted and on what. docs/cost-model.md has the derivations.

Algorithms (n ranks in the group, p of them per scale-up domain, N = n/p domains, S bytes
as the module doc of :mod:`shapewise.ops` sizes them):

=================  =========================================================================
``ring``           one ring through all n ranks: 2(n−1) steps and 2(n−1)/n·S per rank for an
                   all-reduce, half that for all-gather and reduce-scatter. Across domains
                   the ring's channels leave each domain through its p NICs, so the
                   bandwidth is min(B_up·e_up, p·B_nic·e_net): busbw is not the NIC rate.
``tree``           NCCL's tree all-reduce: a chain inside each domain (2S per rank) and a
                   double binary tree across domains (2(N−1)/N·S per domain, on its p NICs),
                   pipelined, so the slower of the two sets the time; 2((p−1) + ⌈log2 N⌉)
                   steps.
``hierarchical``   three phases in sequence: reduce-scatter inside the domain, an all-reduce
                   of each rank's S/p shard across domains on its own NIC, an all-gather
                   inside the domain (all-gather / reduce-scatter: two phases).
``nvls``           NVLink SHARP (NVSwitch gen 3+): the switch reduces, so each GPU sends
                   (1 + 1/n)·S once; one domain only. Its nccl-tests busbw exceeds the wire
                   rate; it has its own efficiency ``nvls_peak_fraction`` and one fixed
                   latency ``nvls_latency_us`` (Simple protocol only: NCCL keeps
                   the ring for small messages).
``pairwise``       all-to-all: (p−1)/n·S over the scale-up link and (n−p)/n·S over the
                   NICs at once, one step per peer.
``p2p``            send/recv of one S-byte message: one step, over the scale-up link when
                   both ranks share a domain, else over the NIC.
=================  =========================================================================

``algorithm=None`` picks the fastest of the algorithms NCCL itself chooses among (ring,
tree, nvls for all-reduce; ring for all-gather and reduce-scatter), as its tuner does with
its own cost model; ``hierarchical`` is priced only when asked for (HSDP-style 2-D
collectives run it explicitly).
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU, get_gpu
from shapewise.ops import COLLECTIVE_KINDS

if TYPE_CHECKING:
    from shapewise.hardware.system import FabricCalibration, System

#: How the achieved bandwidth ramps with message size, e ∝ 1/(1 + (s½/s)^x). A structural
#: constant, not fitted per fabric: x = 1 would be the same as a larger α (the ramp term
#: becomes a constant time), so it could not describe the measured ramp, which spreads over
#: two decades of size. With x = 0.35 the single-node medians move by under 2 points
#: (better on MI300X, worse on A100) and TCPXO's worsens by 5; 0.7 is 4 points worse on
#: the MI300X sweeps, 1 worse on every single-node block (fit_collectives.py --exponent X).
RAMP_EXPONENT = 0.5
ALGORITHMS: tuple[str, ...] = ("ring", "tree", "hierarchical", "nvls", "pairwise", "p2p")
#: PCIe 4.0 x16: 16 GT/s × 16 lanes with 128b/130b coding ≈ 31.5 GB/s per direction
#: (PCI-SIG PCIe 4.0 specification); the link of a GPU with no scale-up link and no system.
PCIE4_X16_GBS = 31.5

#: Per-step latency, seconds, of the stand-in for a GPU that has no shipped system (NCCL's
#: small-message latency is a few µs per hop); systems carry their own fitted α.
ALPHA_S = 5e-6
#: Share of the link the stand-in achieves: a labelled default, about what the fitted
#: scale-up fabrics reach (η 0.71–0.83, docs/validation.md), never the whole link.
STANDALONE_PEAK_FRACTION = 0.8


def efficiency(cal: FabricCalibration, size: float) -> float:
    """Share of the wire bandwidth a phase moving ``size``-byte messages achieves."""
    if size <= 0:
        return cal.peak_fraction
    return cal.peak_fraction / (1.0 + (cal.half_size_bytes / size) ** RAMP_EXPONENT)


def _transfer(cal: FabricCalibration, wire: float, bandwidth: float, size: float,
              peak: float | None = None) -> float:
    """wire / (bandwidth·e(size)), written so that tiny sizes neither overflow nor divide
    by zero: wire·(1 + (s½/s)^x) / (bandwidth·η); ``peak`` overrides η (NVLS)."""
    if wire <= 0 or math.isinf(bandwidth):
        return 0.0
    eta = cal.peak_fraction if peak is None else peak
    ramp = wire / size**RAMP_EXPONENT * cal.half_size_bytes**RAMP_EXPONENT if size > 0 else 0.0
    return (wire + ramp) / (bandwidth * eta)


def _phase(cal: FabricCalibration, steps: float, wire: float, bandwidth: float,
           size: float, peak: float | None = None) -> float:
    """steps·α + wire / (bandwidth·e(size))."""
    return steps * cal.alpha_us * 1e-6 + _transfer(cal, wire, bandwidth, size, peak)


def scale_up_bandwidth(system: System, ranks: int) -> float:
    """Bytes/s per direction each of ``ranks`` GPUs of one domain gets to the others.

    Through a switch, the full link; with direct links, two GPUs get the link between
    them and k > 2 GPUs at most k−1 links, capped by all the GPU's links together.
    """
    up = system.scale_up
    if up.topology == "switch" or up.link_bandwidth_gbs is None:
        return up.bandwidth_gbs * 1e9
    if ranks <= 2:
        return up.link_bandwidth_gbs * 1e9
    return min(up.bandwidth_gbs, (ranks - 1) * up.link_bandwidth_gbs) * 1e9


def _check(kind: object, nbytes: object, group_size: object, ranks_per_node: object,
           system: System) -> tuple[str, float, int, int]:
    if kind not in COLLECTIVE_KINDS:
        raise InputError(f"kind: {kind!r} is not a collective; known: "
                         f"{', '.join(COLLECTIVE_KINDS)}")
    if (isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Real)
            or not math.isfinite(nbytes) or nbytes < 0):
        raise InputError(f"nbytes: must be a finite non-negative number, got {nbytes!r}")
    if isinstance(group_size, bool) or not isinstance(group_size, numbers.Integral) \
            or group_size < 1:
        raise InputError(f"group_size: must be a positive integer, got {group_size!r}")
    n = int(group_size)
    if ranks_per_node is None:
        p = min(n, system.domain_size)
    else:
        if isinstance(ranks_per_node, bool) or not isinstance(ranks_per_node, numbers.Integral) \
                or ranks_per_node < 1:
            raise InputError(f"ranks_per_node: must be a positive integer, got "
                             f"{ranks_per_node!r}")
        p = int(ranks_per_node)
        if p > n:
            raise InputError(f"ranks_per_node: {p} exceeds group_size ({n})")
        if p > system.domain_size:
            raise InputError(f"ranks_per_node: {p} exceeds the {system.domain_size} GPUs of "
                             f"one {system.id} scale-up domain")
    if kind == "send_recv" and n != 2:
        raise InputError(f"group_size: send/recv is between 2 ranks, got {n}")
    return str(kind), float(nbytes), n, p


def _valid(kind: str, system: System, n: int, p: int) -> tuple[str, ...]:
    """Algorithms that can run ``kind`` on this group, NCCL's own choice set first."""
    nodes = -(-n // p)
    if kind == "all_reduce":
        algos = ["ring", "tree"]
        if nodes == 1 and p >= 2 and system.scale_up.in_network_reduction \
                and system.calibration["scale_up"].nvls_peak_fraction is not None:
            algos.append("nvls")
        algos.append("hierarchical")
        return tuple(algos)
    if kind in ("all_gather", "reduce_scatter"):
        return ("ring", "hierarchical")
    if kind == "all_to_all":
        return ("pairwise",)
    return ("p2p",)


def _nccl_choices(kind: str, valid: tuple[str, ...]) -> tuple[str, ...]:
    """What NCCL/RCCL choose among by default (hierarchical only when asked)."""
    return tuple(a for a in valid if a != "hierarchical") or valid


def _time(kind: str, algo: str, S: float, system: System, n: int, p: int) -> float:
    up, net = system.calibration["scale_up"], system.calibration["scale_out"]
    nodes = -(-n // p)
    b_up = scale_up_bandwidth(system, p) if p > 1 else math.inf
    b_nic = system.scale_out.bandwidth_gbs * 1e9
    passes = 2 if kind == "all_reduce" else 1  # reduce-scatter + all-gather

    if algo == "p2p":
        if p == 2:
            return _phase(up, 1, S, scale_up_bandwidth(system, 2), S)
        return _phase(net, 1, S, b_nic, S)
    if algo == "pairwise":
        local = (p - 1) / n * S
        remote = (n - p) / n * S
        t_up = _phase(up, p - 1, local, b_up, S / n) if p > 1 else 0.0
        t_net = _phase(net, n - p, remote, b_nic, S / n) if nodes > 1 else 0.0
        return max(t_up, t_net)
    if algo == "nvls":
        # one fixed latency (Simple protocol, switch synchronisation), not per ring step
        lat = (up.nvls_latency_us or 0.0) * 1e-6
        return lat + _transfer(up, (1 + 1 / n) * S, b_up, S, peak=up.nvls_peak_fraction)
    if algo == "ring":
        wire = passes * (n - 1) / n * S
        if nodes == 1:
            return _phase(up, passes * (n - 1), wire, b_up, S)
        steps_net = passes * (nodes - 1)
        steps_up = passes * (n - 1) - steps_net
        # the ring's channels leave the domain through all p NICs of its ranks
        move = max(_transfer(up, wire, b_up, S), _transfer(net, wire, p * b_nic, S))
        return (steps_up * up.alpha_us + steps_net * net.alpha_us) * 1e-6 + move
    if algo == "tree":
        if nodes == 1:  # a chain: no shorter than the ring
            return _phase(up, 2 * (p - 1), 2 * S, b_up, S)
        t_intra = _transfer(up, 2 * S, b_up, S)
        t_inter = _transfer(net, 2 * (nodes - 1) / nodes * S, p * b_nic, S)
        lat = 2 * ((p - 1) * up.alpha_us + math.ceil(math.log2(nodes)) * net.alpha_us)
        return lat * 1e-6 + max(t_intra, t_inter)
    if algo == "hierarchical":
        intra = _phase(up, p - 1, (p - 1) / p * S, b_up, S) if p > 1 else 0.0
        shard = S / p
        inter = (_phase(net, passes * (nodes - 1), passes * (nodes - 1) / nodes * shard,
                        b_nic, shard) if nodes > 1 else 0.0)
        return passes * intra + inter
    raise AssertionError(algo)


def collective_times(kind: str, nbytes: float, *, system: str | System | GPU,
                     group_size: int, ranks_per_node: int | None = None) -> dict[str, float]:
    """Seconds for ``kind`` under each algorithm that can run it (see :func:`collective_time`)."""
    from shapewise.hardware.system import get_system

    sysm = get_system(system)
    kind, S, n, p = _check(kind, nbytes, group_size, ranks_per_node, sysm)
    if n == 1:
        return {a: 0.0 for a in _valid(kind, sysm, n, p)}
    if p < n and sysm.scale_out.fabric == "none":
        raise InputError(f"ranks_per_node: {sysm.name} has no scale-out network, so all "
                         f"{n} ranks must share its domain (got {p} per domain)")
    return {a: _time(kind, a, S, sysm, n, p) for a in _valid(kind, sysm, n, p)}


def collective_time(kind: str, nbytes: float, *, system: str | System | GPU, group_size: int,
                    ranks_per_node: int | None = None, algorithm: str | None = None) -> float:
    """Seconds for one collective of ``nbytes`` among ``group_size`` ranks.

    ``kind``: all_reduce, all_gather, reduce_scatter, send_recv or all_to_all; ``nbytes``
    as :mod:`shapewise.ops` sizes it (all-reduce: the buffer; all-gather: the gathered
    output; reduce-scatter: the input; all-to-all: what each rank sends; send/recv: one
    message). ``system``: a system or GPU name (a GPU means its usual node).
    ``ranks_per_node``: ranks of the group in one scale-up domain, the "node" of the
    collective: a node on HGX and MI300X, the whole rack of 72 on GB200 NVL72 (None: as
    many as fit, ``min(group_size, domain_size)``).
    ``algorithm``: ring, tree, hierarchical, nvls (all-reduce in one NVSwitch domain),
    pairwise (all-to-all) or p2p (send/recv); None picks what NCCL/RCCL would, the fastest
    of its choices.

    >>> t = collective_time("all_reduce", 1 << 30, system="dgx-h100", group_size=8)
    >>> 0.002 < t < 0.01
    True
    """
    times = collective_times(kind, nbytes, system=system, group_size=group_size,
                             ranks_per_node=ranks_per_node)
    if algorithm is None:
        choices = _nccl_choices(str(kind), tuple(times))
        return min(times[a] for a in choices)
    if algorithm not in ALGORITHMS:
        raise InputError(f"algorithm: {algorithm!r} is not known; known: {', '.join(ALGORITHMS)}")
    if algorithm not in times:
        raise InputError(f"algorithm: {algorithm} cannot run {kind} here; it can run: "
                         f"{', '.join(times)}")
    return times[algorithm]


def chosen_algorithm(kind: str, nbytes: float, *, system: str | System | GPU, group_size: int,
                     ranks_per_node: int | None = None) -> str:
    """The algorithm :func:`collective_time` picks when none is named."""
    times = collective_times(kind, nbytes, system=system, group_size=group_size,
                             ranks_per_node=ranks_per_node)
    choices = _nccl_choices(str(kind), tuple(times))
    return min(choices, key=lambda a: times[a])


def system_for(gpu_or_system: str | System | GPU) -> System:
    """A system, or a GPU's usual node; a GPU with none gets a one-node stand-in.

    The stand-in keeps :func:`allreduce_time` and ``price(op, gpu)`` working for every
    catalog GPU: its scale-up link is the profile's (``link_bandwidth_gbs``; PCIe 4.0 x16
    when it has none) at ``STANDALONE_PEAK_FRACTION`` of its rate and ``ALPHA_S`` per step,
    its domain as large as any group asked of it, and it has no scale-out network (a group
    that needs one is refused).
    """
    from shapewise.hardware.system import System, default_system, get_system

    if isinstance(gpu_or_system, System):
        return gpu_or_system
    if isinstance(gpu_or_system, str):
        try:
            return get_system(gpu_or_system)
        except InputError:
            pass
    g = get_gpu(gpu_or_system)  # type: ignore[arg-type]
    found = default_system(g)
    return found if found is not None else _standalone(g)


def _standalone(gpu: GPU) -> System:
    from shapewise.hardware.system import (
        FabricCalibration,
        ScaleOut,
        ScaleUp,
        System,
    )

    link = gpu.link_bandwidth_gbs if gpu.link_bandwidth_gbs > 0 else PCIE4_X16_GBS
    big = 1 << 20
    default = FabricCalibration(alpha_us=ALPHA_S * 1e6, peak_fraction=STANDALONE_PEAK_FRACTION,
                                half_size_bytes=0.0, status="default",
                                provenance={"method": "stand-in for a GPU with no system: 5 us "
                                            "per step, 80% of its link, no size ramp"})
    return System(
        id=f"{gpu.id}-standalone", name=f"{gpu.name} (no system: its own link only)", gpu=gpu,
        gpus_per_node=big,
        scale_up=ScaleUp(name=gpu.link_name or "PCIe 4.0 x16", fabric="standalone",
                         bandwidth_gbs=link, latency_us=ALPHA_S * 1e6, domain_size=big,
                         topology="switch"),
        scale_out=ScaleOut(nic="none", fabric="none", nics_per_gpu=1.0, bandwidth_gbs=link,
                           latency_us=ALPHA_S * 1e6),
        calibration={"scale_up": default, "scale_out": default},
        sources={"scale_up.bandwidth_gbs": f"the {gpu.id} profile's link_bandwidth_gbs, or "
                                           "PCIe 4.0 x16 (PCI-SIG) without one"},
        notes="synthesised by shapewise.cost.comm.system_for",
    )


def allreduce_time(nbytes: float, *, gpu: str | GPU, tp: int) -> float:
    """Seconds for a tensor-parallel all-reduce of ``nbytes`` among ``tp`` GPUs of one node.

    A thin call into :func:`collective_time` on the GPU's usual node (0 when tp == 1).
    """
    if isinstance(tp, bool) or not isinstance(tp, numbers.Integral) or tp < 1:
        raise InputError(f"tp: must be a positive integer, got {tp!r}")
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Real) or not math.isfinite(
            nbytes) or nbytes < 0:
        raise InputError(f"nbytes: must be a finite non-negative number, got {nbytes!r}")
    if tp == 1:
        return 0.0
    system = system_for(gpu)
    if tp > system.domain_size:
        raise InputError(f"tp: {tp} exceeds the {system.domain_size} GPUs of one "
                         f"{system.id} scale-up domain")
    return collective_time("all_reduce", nbytes, system=system, group_size=tp,
                           ranks_per_node=tp)
