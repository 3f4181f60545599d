"""recommend_shape(recipe=): shapes priced under an fp8 recipe, as estimate prices them."""

from __future__ import annotations

import pytest

import shapewise as sw
from shapewise.errors import InputError
from shapewise.search.recommend import recommend_shape


def test_a_recipe_prices_every_shape_under_fp8() -> None:
    kw = dict(params=1.1e9, arch="llama", gpu="h100", seq_len=4096, top_k=3)
    bf16 = recommend_shape(**kw)  # type: ignore[arg-type]
    fp8 = recommend_shape(**kw, recipe="te-delayed")  # type: ignore[arg-type]
    assert fp8.inputs["recipe"] == "te-delayed" and bf16.inputs["recipe"] is None
    assert any("te-delayed" in n for n in fp8.notes)
    # each candidate's estimate is estimate()'s under the recipe, not the bf16 one
    for c in fp8.candidates:
        direct = sw.estimate(c.shape, gpu="h100", seq_len=4096, recipe="te-delayed")
        plain = sw.estimate(c.shape, gpu="h100", seq_len=4096)
        assert c.estimate.step_time_s == pytest.approx(direct.step_time_s)
        assert direct.step_time_s < plain.step_time_s
        assert any(o.name.startswith("fp8_") for o in c.estimate.breakdown)
    assert fp8.candidates[0].tokens_per_s > bf16.candidates[0].tokens_per_s
    assert fp8.baselines
    for b in fp8.baselines:  # the baselines are priced under the same recipe
        assert any(o.name.startswith("fp8_") for o in b.candidate.estimate.breakdown)


def test_a_recipe_reaches_the_moe_grid() -> None:
    kw = dict(arch="moe", params=47e9, active_params=13e9, gpu="h100", seq_len=4096, top_k=1)
    bf16 = recommend_shape(**kw)  # type: ignore[arg-type]
    fp8 = recommend_shape(**kw, recipe="te-delayed")  # type: ignore[arg-type]
    assert fp8.inputs["recipe"] == "te-delayed"
    assert fp8.candidates[0].tokens_per_s != bf16.candidates[0].tokens_per_s


def test_fp8_on_a_gpu_without_it_names_the_field() -> None:
    with pytest.raises(InputError, match=r"^dtype: .* has no fp8 tensor cores"):
        recommend_shape(params=1.1e9, arch="llama", gpu="a100", recipe="te-delayed")
    with pytest.raises(InputError, match=r"^dtype: .* has no fp8 tensor cores"):
        recommend_shape(arch="moe", params=47e9, active_params=13e9, gpu="a100",
                        recipe="te-delayed")
    with pytest.raises(InputError, match=r"^recipe: mxfp8 runs on Blackwell"):
        recommend_shape(params=1.1e9, arch="llama", gpu="h100", recipe="mxfp8")
