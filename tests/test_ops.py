"""The op vocabulary and ``price``: each op priced by the model of its kind."""

from __future__ import annotations

import pytest

from shapewise.cost.attention import attention_time
from shapewise.cost.comm import allreduce_time
from shapewise.cost.elementwise import op_time
from shapewise.cost.gemm import gemm_time
from shapewise.cost.price import price
from shapewise.errors import InputError
from shapewise.ops import Attention, Collective, Gemm, MemoryBound


def test_gemm_backward_shapes_keep_flops() -> None:
    g = Gemm(m=4096, n=1024, k=512)
    da, db = g.backward()
    assert (da.m, da.n, da.k) == (4096, 512, 1024)
    assert (db.m, db.n, db.k) == (512, 1024, 4096)
    assert da.flops == db.flops == g.flops == 2.0 * 4096 * 1024 * 512


def test_price_dispatches_to_each_model() -> None:
    assert price(Gemm(m=4096, n=4096, k=4096), "h100") == gemm_time(4096, 4096, 4096, gpu="h100")
    att = Attention(batch=2, heads=32, kv_heads=8, seq_len=4096, head_dim=128, backward=True)
    assert price(att, "h100") == attention_time(batch=2, heads=32, kv_heads=8, seq_len=4096,
                                                head_dim=128, gpu="h100", backward=True)
    mb = MemoryBound(op="layernorm", numel=1 << 24)
    assert price(mb, "a100") == op_time("layernorm", 1 << 24, gpu="a100")
    ar = Collective(kind="all_reduce", nbytes=64e6, group="tp", group_size=8)
    assert price(ar, "h100") == allreduce_time(64e6, gpu="h100", tp=8)


def test_collectives_grow_with_bytes_and_vanish_alone() -> None:
    for kind in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all"):
        one = Collective(kind=kind, nbytes=1e9, group="dp", group_size=1)
        assert price(one, "h100") == 0.0
        small = price(Collective(kind=kind, nbytes=1e6, group="dp", group_size=8), "h100")
        big = price(Collective(kind=kind, nbytes=1e9, group="dp", group_size=8), "h100")
        assert 0 < small < big


@pytest.mark.parametrize(("make", "field"), [
    (lambda: Gemm(m=0, n=1, k=1), "m"),
    (lambda: Gemm(m=1, n=1, k=1, batch=True), "batch"),
    (lambda: Attention(batch=1, heads=6, kv_heads=4, seq_len=8, head_dim=64), "kv_heads"),
    (lambda: MemoryBound(op="", numel=4), "op"),
    (lambda: Collective(kind="gather", nbytes=1, group="tp", group_size=2), "kind"),
    (lambda: Collective(kind="all_reduce", nbytes=-1, group="tp", group_size=2), "nbytes"),
    (lambda: Collective(kind="all_reduce", nbytes=1, group="xx", group_size=2), "group"),
    (lambda: Collective(kind="all_reduce", nbytes=1, group="dp", group_size=2,
                        ranks_per_node=4), "ranks_per_node"),
])
def test_bad_fields_are_named(make, field: str) -> None:
    with pytest.raises(InputError, match=field):
        make()
