"""recommend_shape(): constraints, determinism, the Optuna search against the exhaustive one."""

from __future__ import annotations

import pytest

import shapewise as sw
from shapewise.errors import InputError
from shapewise.search.space import SearchSpace


@pytest.fixture(scope="module")
def rec_27b() -> sw.Recommendation:
    return sw.recommend_shape(params=2.7e9, gpu="a100")


def test_best_shape_alignment_and_budget(rec_27b: sw.Recommendation) -> None:
    best = rec_27b.best
    assert best.hidden_size % 64 == 0 and best.head_dim % 64 == 0
    assert best.vocab_size % 64 == 0 and best.vocab_size >= 50257
    n = sw.count_params(best)
    assert abs(n / 2.7e9 - 1) <= 0.05
    assert rec_27b.estimate.tokens_per_s > 0
    assert rec_27b.candidates[0].shape == best


def test_baseline_is_the_textbook_shape_and_loses(rec_27b: sw.Recommendation) -> None:
    base = rec_27b.baseline
    assert base is not None
    # the source paper's GPT-3 2.7B: h=2560, 32 heads of 80, 32 layers, vocab 50257
    assert (base.shape.hidden_size, base.shape.num_attention_heads,
            base.shape.num_hidden_layers, base.shape.vocab_size) == (2560, 32, 32, 50257)
    assert rec_27b.gain is not None and rec_27b.gain > 0.03
    assert "head dim 80" in base.reason and "vocab 50257" in base.reason


def test_candidates_ranked_unique_with_reasons(rec_27b: sw.Recommendation) -> None:
    from shapewise.search.recommend import NEAR_TIE, _rules_kept

    top = max(c.score for c in rec_27b.candidates)
    tied = [c for c in rec_27b.candidates if c.score >= top * (1 - NEAR_TIE)]
    # near-ties first, ordered by the alignment rules they keep; then by score
    assert list(rec_27b.candidates[: len(tied)]) == tied
    kept = [_rules_kept(c.shape, 1) for c in tied]
    assert kept == sorted(kept, reverse=True)
    rest = [c.score for c in rec_27b.candidates[len(tied):]]
    assert rest == sorted(rest, reverse=True)
    assert rec_27b.candidates[0].score >= top * (1 - NEAR_TIE)
    assert len({repr(c.shape) for c in rec_27b.candidates}) == len(rec_27b.candidates)
    assert all(c.reason for c in rec_27b.candidates)
    d = rec_27b.to_dict()
    assert d["best"]["hidden_size"] == rec_27b.best.hidden_size and d["baseline"]


def test_same_seed_same_answer() -> None:
    a = sw.recommend_shape(params=350e6, gpu="h100", n_trials=60, seed=3)
    b = sw.recommend_shape(params=350e6, gpu="h100", n_trials=60, seed=3)
    assert a.best == b.best and a.to_dict()["candidates"] == b.to_dict()["candidates"]


@pytest.mark.parametrize(("arch", "params", "gpu"), [("gpt", 350e6, "a100"),
                                                      ("llama", 1.1e9, "h100")])
def test_optuna_within_one_percent_of_exhaustive_optimum(arch: str, params: float,
                                                         gpu: str) -> None:
    space = SearchSpace(arch=arch, hidden_step=64, head_dims=(64, 80, 96, 128),  # type: ignore[arg-type]
                        kv_ratios=(1, 4) if arch == "llama" else (1,),
                        ffn_range=(0.97, 1.03), ffn_step=64, vocab_multiples=(1, 64))
    ref = sw.exhaustive_search(params=params, gpu=gpu, arch=arch, space=space,
                               vocab_size=32000 if arch == "llama" else 50257)
    rec = sw.recommend_shape(params=params, gpu=gpu, arch=arch, space=space, n_trials=150,
                             vocab_size=32000 if arch == "llama" else 50257)
    assert ref.evaluated > 50
    assert rec.candidates[0].score >= 0.99 * ref.score


@pytest.mark.parametrize("kw", [
    # the default spaces; each missed the optimum by 2-4% before the polish searched
    # head layouts jointly with the FFN (benchmarks/bench_search_gap.py has more)
    dict(params=1.3e9, gpu="h100", arch="llama", tp=8),
    dict(params=1.3e9, gpu="mi300x", arch="gpt"),
    dict(params=125e6, gpu="mi300x", arch="llama"),
])
def test_default_search_finds_the_exhaustive_optimum(kw: dict) -> None:
    ref = sw.exhaustive_search(**kw)
    rec = sw.recommend_shape(**kw)
    assert max(c.score for c in rec.candidates) >= 0.99 * ref.score
    assert rec.candidates[0].score >= 0.99 * (1 - 0.005) * ref.score  # near-tie rule


@pytest.mark.parametrize("kw", [
    dict(params=125e6, gpu="a100", tp=8, top_k=8),
    dict(params=1.3e9, gpu="v100", arch="llama", tp=8, dtype="fp16"),
    dict(params=7e9, gpu="v100", arch="llama", tp=8, dtype="fp16"),
])
def test_every_candidate_is_within_the_budget(kw: dict) -> None:
    rec = sw.recommend_shape(**kw)
    for c in rec.candidates:
        assert abs(sw.count_params(c.shape) / kw["params"] - 1) <= 0.05, c.shape


def test_llama_baseline_splits_over_tp() -> None:
    rec = sw.recommend_shape(params=7e9, gpu="h100", arch="llama", tp=2, n_trials=20)
    assert rec.baseline is not None and rec.gain is not None
    assert rec.baseline.shape.ffn_size % 2 == 0
    assert abs(rec.baseline.shape.ffn_size - 8 / 3 * rec.baseline.shape.hidden_size) < 2


def test_json_says_what_was_asked() -> None:
    rec = sw.recommend_shape(params=350e6, gpu="a100", arch="llama", seq_len=4096, tp=2,
                             n_trials=10)
    assert rec.to_dict()["inputs"] == {
        "arch": "llama", "dtype": "bf16", "seq_len": 4096, "tp": 2, "micro_batch": 1,
        "tolerance": 0.05, "recompute": False, "vocab_size": 50257}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"tp": 0}, "tp: must be a positive integer"),
    ({"params": -1.0}, "params: must be a positive"),
    ({"arch": "bert"}, "arch: must be"),
    ({"gpu": "v100"}, "dtype: .* has no bf16 math"),
])
def test_exhaustive_search_checks_its_input(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        sw.exhaustive_search(**{"params": 125e6, "gpu": "a100", **kwargs})


def test_exhaustive_search_walks_the_recommend_space() -> None:
    from shapewise.search.recommend import default_space

    assert default_space("llama").kv_ratios == (1, 2, 4, 8)
    small = sw.exhaustive_search(params=125e6, gpu="a100", arch="llama")
    assert small.evaluated > 4000  # all four KV ratios, not MHA only


def test_llama_searches_kv_heads_and_ffn() -> None:
    rec = sw.recommend_shape(params=1e9, gpu="h100", arch="llama", vocab_size=32000,
                             n_trials=80)
    best = rec.best
    assert best.arch == "llama" and best.num_attention_heads % best.kv_heads == 0
    assert 0.9 * 8 / 3 * best.hidden_size <= best.ffn_size <= 1.1 * 8 / 3 * best.hidden_size


def test_vit_recommendation_on_mi250x() -> None:
    rec = sw.recommend_shape(params=300e6, gpu="mi250x-gcd", arch="vit", micro_batch=32,
                             n_trials=40)
    assert rec.best.arch == "vit" and rec.estimate.seq_len == 197


def test_tp_constraints_hold() -> None:
    rec = sw.recommend_shape(params=1.3e9, gpu="h100", tp=4, n_trials=40)
    b = rec.best
    assert b.num_attention_heads % 4 == 0 and b.vocab_size % 4 == 0
    assert b.hidden_size % 4 == 0 and b.ffn_size % 4 == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"params": 0}, "params"), ({"params": -1e9}, "params"),
     ({"params": 1e3}, "params.*below the smallest shape"),
     ({"params": 1e16}, "params.*above the largest shape"),
     ({"params": 1e9, "tolerance": 0}, "tolerance"),
     ({"params": 1e9, "tolerance": -0.1}, "tolerance"),
     ({"params": 1e9, "tp": 997}, "tp: 997 divides no head count"),
     ({"params": 1e9, "gpu": "not-a-gpu"}, "gpu"),
     ({"params": float("nan")}, "params"),
     ({"params": 1e9, "arch": "rnn"}, "arch"),
     ({"params": 1e9, "n_trials": 0}, "n_trials")],
)
def test_bad_input_clear_errors(kwargs: dict, match: str) -> None:
    args = {"gpu": "a100", "n_trials": 5, **kwargs}
    with pytest.raises(InputError, match=match):
        sw.recommend_shape(**args)
