from __future__ import annotations

import pytest

import shapewise as sw
from shapewise.cost.comm import PCIE4_X16_GBS
from shapewise.errors import InputError


def test_memory_bound_time_is_bytes_over_bandwidth_plus_launch() -> None:
    g = sw.get_gpu("h100")
    cal = g.calibration
    assert cal is not None
    t = sw.memory_bound_time(1e9, gpu=g)
    assert t == pytest.approx(1e9 / (g.bandwidth * cal.bandwidth_efficiency)
                              + cal.launch_us * 1e-6)
    with pytest.raises(InputError, match="nbytes"):
        sw.memory_bound_time(-1, gpu=g)
    with pytest.raises(InputError, match="nbytes"):
        sw.memory_bound_time(float("inf"), gpu=g)


def test_allreduce_alpha_beta() -> None:
    assert sw.allreduce_time(1e9, gpu="h100", tp=1) == 0.0
    t2 = sw.allreduce_time(1e9, gpu="h100", tp=2)
    t8 = sw.allreduce_time(1e9, gpu="h100", tp=8)
    assert t8 > t2 > 0
    # a thin call into the collective model on the H100's usual node (tests/cost/test_comm.py)
    assert t8 == sw.collective_time("all_reduce", 1e9, system="hgx-h100", group_size=8)
    # no NVLink and no system for an L4: PCIe 4.0 x16, at 80% of its rate
    assert sw.allreduce_time(1e9, gpu="l4", tp=2) == pytest.approx(
        1e9 / (0.8 * PCIE4_X16_GBS * 1e9) + 2 * 5e-6)
    with pytest.raises(InputError, match="tp"):
        sw.allreduce_time(1e6, gpu="h100", tp=0)
