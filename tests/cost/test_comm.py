"""The collective model: hand calculations per algorithm, monotonicity, named errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shapewise as sw
from shapewise.cost.comm import (
    RAMP_EXPONENT,
    chosen_algorithm,
    collective_time,
    collective_times,
    efficiency,
    scale_up_bandwidth,
)
from shapewise.cost.price import price
from shapewise.errors import InputError
from shapewise.hardware.system import FabricCalibration, System, get_system
from shapewise.ops import COLLECTIVE_KINDS, Collective, Gemm


def _cal(alpha_us: float, eta: float, half: float, nvls: float | None = None
         ) -> FabricCalibration:
    return FabricCalibration(alpha_us=alpha_us, peak_fraction=eta, half_size_bytes=half,
                             nvls_peak_fraction=nvls,
                             nvls_latency_us=None if nvls is None else 30.0, status="default")


def _toy() -> System:
    """An HGX H100 with round calibration numbers, for hand calculations."""
    s = get_system("hgx-h100")
    return dataclasses.replace(s, calibration={"scale_up": _cal(2.0, 0.8, 1e6, 0.6),
                                               "scale_out": _cal(10.0, 0.5, 4e6)})


def _e(eta: float, half: float, size: float) -> float:
    return eta / (1 + (half / size) ** RAMP_EXPONENT)


S = 64e6  # bytes


def test_one_node_ring_by_hand() -> None:
    s = _toy()
    t = collective_time("all_reduce", S, system=s, group_size=8, algorithm="ring")
    assert t == pytest.approx(14 * 2e-6 + 2 * 7 / 8 * S / (450e9 * _e(0.8, 1e6, S)))
    t = collective_time("all_gather", S, system=s, group_size=8, algorithm="ring")
    assert t == pytest.approx(7 * 2e-6 + 7 / 8 * S / (450e9 * _e(0.8, 1e6, S)))
    assert collective_time("reduce_scatter", S, system=s, group_size=8) == pytest.approx(t)


def test_nvls_sends_each_byte_once_at_its_own_efficiency() -> None:
    s = _toy()
    t = collective_time("all_reduce", S, system=s, group_size=8, algorithm="nvls")
    assert t == pytest.approx(30e-6 + 9 / 8 * S / (450e9 * _e(0.6, 1e6, S)))
    # the nccl-tests busbw of NVLS exceeds the wire rate with a big enough efficiency
    fast = dataclasses.replace(s, calibration={**s.calibration,
                                               "scale_up": _cal(2.0, 0.8, 1e6, 0.7)})
    big = 16 * 2**30
    busbw = big / collective_time("all_reduce", big, system=fast, group_size=8,
                                  algorithm="nvls") * 2 * 7 / 8
    assert busbw > 450e9


def test_multi_node_ring_is_held_by_the_domain_s_nics_not_one_nic() -> None:
    s = _toy()
    n, p = 16, 8
    t = collective_time("all_reduce", S, system=s, group_size=n, ranks_per_node=p,
                        algorithm="ring")
    bw = min(450e9 * _e(0.8, 1e6, S), p * 50e9 * _e(0.5, 4e6, S))
    steps_net = 2 * (2 - 1)
    lat = ((2 * (n - 1) - steps_net) * 2.0 + steps_net * 10.0) * 1e-6
    assert t == pytest.approx(lat + 2 * (n - 1) / n * S / bw)
    busbw = 2 * (n - 1) / n * S / (t - lat)
    assert busbw > 50e9 * 0.5  # more than one NIC gives: the ring uses all of the node's


def test_tree_and_hierarchical_by_hand() -> None:
    s = _toy()
    n, p, N = 64, 8, 8
    t = collective_time("all_reduce", S, system=s, group_size=n, ranks_per_node=p,
                        algorithm="tree")
    intra = 2 * S / (450e9 * _e(0.8, 1e6, S))
    inter = 2 * (N - 1) / N * S / (p * 50e9 * _e(0.5, 4e6, S))
    lat = 2 * ((p - 1) * 2.0 + math.log2(N) * 10.0) * 1e-6
    assert t == pytest.approx(lat + max(intra, inter))
    t = collective_time("all_reduce", S, system=s, group_size=n, ranks_per_node=p,
                        algorithm="hierarchical")
    rs = 7 * 2e-6 + 7 / 8 * S / (450e9 * _e(0.8, 1e6, S))
    shard = S / p
    ar = 14 * 10e-6 + 2 * 7 / 8 * shard / (50e9 * _e(0.5, 4e6, shard))
    assert t == pytest.approx(2 * rs + ar)


def test_p2p_and_all_to_all_by_hand() -> None:
    s = _toy()
    same = collective_time("send_recv", S, system=s, group_size=2, ranks_per_node=2)
    assert same == pytest.approx(2e-6 + S / (450e9 * _e(0.8, 1e6, S)))
    across = collective_time("send_recv", S, system=s, group_size=2, ranks_per_node=1)
    assert across == pytest.approx(10e-6 + S / (50e9 * _e(0.5, 4e6, S)))
    t = collective_time("all_to_all", S, system=s, group_size=16, ranks_per_node=8)
    up = 7 * 2e-6 + 7 / 16 * S / (450e9 * _e(0.8, 1e6, S / 16))
    net = 8 * 10e-6 + 8 / 16 * S / (50e9 * _e(0.5, 4e6, S / 16))
    assert t == pytest.approx(max(up, net))


def test_nvl72_counts_ranks_per_nvlink_domain_the_rack() -> None:
    nvl = get_system("gb200-nvl72")
    assert nvl.gpus_per_node == 4 and nvl.domain_size == 72
    # 72 ranks in one NVLink domain: no NIC phase, NVLS on offer
    one = collective_times("all_reduce", 1e9, system=nvl, group_size=72, ranks_per_node=72)
    assert one == collective_times("all_reduce", 1e9, system=nvl, group_size=72)
    assert "nvls" in one
    # 144 ranks span two racks: the network joins them
    two = collective_times("all_reduce", 1e9, system=nvl, group_size=144, ranks_per_node=72)
    assert "nvls" not in two and min(two.values()) > min(one.values())
    # two stages in one rack talk over NVLink; on HGX one rank per node crosses the network
    assert collective_time("send_recv", 1e8, system=nvl, group_size=2, ranks_per_node=2) < \
        collective_time("send_recv", 1e8, system="hgx-b200", group_size=2, ranks_per_node=1)
    with pytest.raises(InputError, match="ranks_per_node: 144 exceeds the 72 GPUs"):
        collective_time("all_reduce", 1, system=nvl, group_size=144, ranks_per_node=144)


def test_direct_links_give_a_pair_one_link() -> None:
    mi = get_system("mi300x-8")
    assert scale_up_bandwidth(mi, 2) == 64e9
    assert scale_up_bandwidth(mi, 4) == 3 * 64e9
    assert scale_up_bandwidth(mi, 8) == 448e9
    fr = get_system("frontier")
    assert scale_up_bandwidth(fr, 2) == 200e9  # the two GCDs of one MI250X
    assert scale_up_bandwidth(fr, 8) == 50e9  # a ring that crosses packages


def test_the_default_is_the_fastest_of_nccl_s_choices() -> None:
    s = _toy()
    times = collective_times("all_reduce", S, system=s, group_size=8)
    assert set(times) == {"ring", "tree", "nvls", "hierarchical"}
    assert collective_time("all_reduce", S, system=s, group_size=8) == min(
        times[a] for a in ("ring", "tree", "nvls"))
    assert chosen_algorithm("all_reduce", 1e3, system=s, group_size=8) == "ring"
    # A100's NVSwitch has no in-network reduction
    assert "nvls" not in collective_times("all_reduce", S, system="hgx-a100", group_size=8)
    # across nodes NVLS is not offered; a big all-reduce over 64 GPUs takes the tree
    assert chosen_algorithm("all_reduce", 1e9, system=s, group_size=64,
                            ranks_per_node=8) == "tree"


def test_efficiency_ramps_and_never_reaches_the_wire_rate() -> None:
    cal = _cal(1.0, 0.8, 1e6)
    assert efficiency(cal, 1e6) == pytest.approx(0.4)
    sizes = [2.0**k for k in range(3, 40)]
    effs = [efficiency(cal, x) for x in sizes]
    assert effs == sorted(effs) and effs[-1] < 0.8


KINDS = [k for k in COLLECTIVE_KINDS if k != "send_recv"]


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(KINDS),
       system=st.sampled_from(["hgx-a100", "hgx-h100", "hgx-b200", "mi300x-8", "frontier",
                               "gb200-nvl72"]),
       nodes=st.integers(1, 16), per=st.sampled_from([1, 2, 4, 8]),
       a=st.floats(0, 1e10), b=st.floats(0, 1e10))
def test_time_grows_with_bytes_for_every_algorithm(kind, system, nodes, per, a, b) -> None:
    lo, hi = sorted((a, b))
    n = nodes * per
    times_lo = collective_times(kind, lo, system=system, group_size=n, ranks_per_node=per)
    times_hi = collective_times(kind, hi, system=system, group_size=n, ranks_per_node=per)
    for algo in times_lo:
        assert times_lo[algo] <= times_hi[algo] * (1 + 1e-12), algo
    assert collective_time(kind, lo, system=system, group_size=n, ranks_per_node=per) <= \
        collective_time(kind, hi, system=system, group_size=n, ranks_per_node=per) * (1 + 1e-12)


def test_more_nodes_never_speed_up_a_ring() -> None:
    times = [collective_time("all_reduce", 1e9, system="hgx-h100", group_size=8 * k,
                             ranks_per_node=8, algorithm="ring") for k in (1, 2, 4, 8, 32)]
    assert times == sorted(times)


def test_price_takes_a_system_or_a_gpu() -> None:
    op = Collective(kind="all_gather", nbytes=1e8, group="dp", group_size=32, ranks_per_node=8)
    h = get_system("h100")
    assert price(op, h) == collective_time("all_gather", 1e8, system=h, group_size=32,
                                           ranks_per_node=8)
    assert price(op, "h100") == price(op, h) == price(op, "dgx-h100")
    assert price(op, sw.get_gpu("h100")) == price(op, h)
    gemm = Gemm(m=4096, n=4096, k=4096)
    assert price(gemm, h) == price(gemm, "h100") == price(gemm, "dgx-h100")
    fr = Collective(kind="all_reduce", nbytes=1e8, group="dp", group_size=64, ranks_per_node=8)
    assert price(fr, "mi250x-gcd") == price(fr, "frontier") > price(fr, "mi300x")
    for op in (fr, gemm):  # as everywhere a GPU is named, 'mi250x' is not one device
        with pytest.raises(InputError, match="mi250x-gcd"):
            price(op, "mi250x")


def test_allreduce_time_is_a_thin_call() -> None:
    assert sw.allreduce_time(1e8, gpu="h200", tp=4) == collective_time(
        "all_reduce", 1e8, system="hgx-h200", group_size=4, ranks_per_node=4)
    with pytest.raises(InputError, match="tp: 16 exceeds"):
        sw.allreduce_time(1e8, gpu="h100", tp=16)


@pytest.mark.parametrize(("call", "field"), [
    (lambda: collective_time("gather", 1, system="h100", group_size=2), "kind"),
    (lambda: collective_time("all_reduce", -1, system="h100", group_size=2), "nbytes"),
    (lambda: collective_time("all_reduce", math.nan, system="h100", group_size=2), "nbytes"),
    (lambda: collective_time("all_reduce", 1, system="h100", group_size=0), "group_size"),
    (lambda: collective_time("all_reduce", 1, system="h100", group_size=8,
                             ranks_per_node=16), "ranks_per_node"),
    (lambda: collective_time("all_reduce", 1, system="h100", group_size=16,
                             ranks_per_node=16), "ranks_per_node"),
    (lambda: collective_time("all_reduce", 1, system="h100", group_size=8,
                             algorithm="butterfly"), "algorithm"),
    (lambda: collective_time("all_gather", 1, system="h100", group_size=8,
                             algorithm="nvls"), "algorithm"),
    (lambda: collective_time("send_recv", 1, system="h100", group_size=4), "group_size"),
    (lambda: collective_time("all_reduce", 1, system="dgx-h1000", group_size=2), "system"),
    (lambda: price(Collective(kind="all_reduce", nbytes=1, group="dp", group_size=4,
                              ranks_per_node=2), "l4"), "ranks_per_node"),
])
def test_bad_input_names_the_field(call, field: str) -> None:
    with pytest.raises(InputError, match=f"^{field}:"):
        call()


def test_a_gpu_without_a_system_keeps_its_own_link() -> None:
    # L4 has no NVLink and no shipped system: PCIe 4.0 x16 at 80% within one box
    assert sw.allreduce_time(1e9, gpu="l4", tp=2) == pytest.approx(1e9 / (0.8 * 31.5e9)
                                                                   + 2 * 5e-6)
