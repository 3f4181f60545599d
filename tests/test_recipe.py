"""fp8 recipes: presets, which GPUs run them, the quantization kernels and the weight copies."""

from __future__ import annotations

import dataclasses

import pytest

from shapewise.cost.price import price
from shapewise.errors import InputError
from shapewise.model import get_preset
from shapewise.ops import Gemm, MemoryBound
from shapewise.recipe import RECIPES, Recipe, check_recipe, fp8_weight_bytes, get_recipe


def test_presets_and_their_scaling() -> None:
    assert set(RECIPES) == {"te-delayed", "te-current", "mxfp8", "blockwise", "mi300x",
                            "nvfp4", "mxfp4"}
    assert Recipe.te_delayed().scaling == "delayed" and Recipe.te_delayed().block is None
    assert Recipe.mxfp8().block == 32 and Recipe.blockwise().block == 128
    assert "fnuz" in Recipe.mi300x().formats
    assert Recipe.te_current().quantize_bytes == 6 and Recipe.mxfp8().quantize_bytes == 4
    r = get_recipe("te-delayed", fp8_attention=True)
    assert r.fp8_attention and not r.fp8_logits
    assert get_recipe(r) is r
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.scaling = "current"  # type: ignore[misc]


def test_each_gpu_runs_its_recipes() -> None:
    for gpu in ("h100", "h200", "b200", "gb200", "b300", "gb300"):
        assert check_recipe("te-delayed", gpu).name == "te-delayed"
        assert check_recipe("blockwise", gpu).name == "blockwise"
    for gpu in ("b200", "b300", "gb300"):
        assert check_recipe("mxfp8", gpu).block == 32
    assert check_recipe("mi300x", "mi300x").name == "mi300x"
    assert check_recipe("te-current", "l40s").name == "te-current"


def test_refusals_name_the_field_and_say_why() -> None:
    with pytest.raises(InputError, match=r"^dtype: NVIDIA A100.* has no fp8 tensor cores"):
        check_recipe("te-delayed", "a100")
    with pytest.raises(InputError, match=r"^recipe: mxfp8 runs on Blackwell, not on NVIDIA "
                                         r"H100.*it runs: te-delayed, te-current, blockwise"):
        check_recipe("mxfp8", "h100")
    with pytest.raises(InputError, match=r"^recipe: te-delayed runs on .*it runs: mi300x"):
        check_recipe("te-delayed", "mi300x")
    with pytest.raises(InputError, match=r"^recipe: nvfp4 needs fp4 tensor cores \(Blackwell\)"):
        check_recipe("nvfp4", "h100")
    with pytest.raises(InputError, match=r"^recipe: mxfp4 \(fp4\) GEMMs are not priced yet"):
        check_recipe("mxfp4", "b200")
    with pytest.raises(InputError, match=r"^recipe: 'fp9' is not a recipe"):
        get_recipe("fp9")
    with pytest.raises(InputError, match=r"^fp8_loss: not a recipe option"):
        get_recipe("te-delayed", fp8_loss=True)
    with pytest.raises(InputError, match=r"^fp8_attention: must be True or False"):
        get_recipe("te-delayed", fp8_attention=1)  # type: ignore[arg-type]


def test_quantization_kernels_of_one_gemm() -> None:
    g = Gemm(m=8192, n=4096, k=4096, dtype="fp8")
    ops = Recipe.te_delayed().quantize_ops(g)
    # X (m·k) and W (k·n) before the forward, dY (m·n) before the backward
    assert [(ph, op.numel) for ph, op in ops] == [
        ("forward", 8192 * 4096), ("forward", 4096 * 4096), ("backward", 8192 * 4096)]
    assert all(op.op == "fp8_quantize" and op.bytes_per_element == 4 for _, op in ops)
    # memory-bound: 4 bytes per element over the bandwidth; current scaling reads once more
    t_delayed = price(ops[0][1], "h100")
    t_current = price(Recipe.te_current().quantize_ops(g)[0][1], "h100")
    assert t_current > 1.4 * t_delayed
    bf16_copy = price(MemoryBound(op="residual_add", numel=8192 * 4096), "h100")  # 3 passes
    assert 0.5 < t_delayed / bf16_copy < 1.0  # 4 bytes vs 6 bytes per element


def test_fp8_weight_copies() -> None:
    llama = get_preset("llama-2-7b")
    matrices = 32 * (4 * 4096**2 + 3 * 4096 * 11008)  # q, k, v, o, gate, up, down
    assert fp8_weight_bytes(llama) == 2 * matrices  # row-wise and column-wise, 1 byte each
    assert fp8_weight_bytes(llama, tp=2) == matrices
    assert fp8_weight_bytes(llama, recipe=get_recipe("te-delayed", fp8_logits=True)) \
        == 2 * (matrices + 32000 * 4096)
