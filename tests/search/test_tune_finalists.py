"""What recommend gives tune: distinct finalists, the arch's vocabulary, honest rank verdicts."""

from __future__ import annotations

import shapewise as sw
from shapewise.tuning.report import MIN_RANK_POINTS, POOR_RHO, rank_verdict
from shapewise.tuning.study import StudyRequest, finalists


def test_a_rank_correlation_over_fewer_than_5_points_is_never_good() -> None:
    assert MIN_RANK_POINTS == 5
    assert rank_verdict(1.0, 3) == "only 3 points: too few to call good"
    assert rank_verdict(0.9, 4).startswith("only 4 points")
    assert rank_verdict(0.9, 5) == "good"
    assert rank_verdict(POOR_RHO - 0.01, 8) == "poor" and rank_verdict(None, 2) == "n/a"


def test_tune_finalists_are_distinct_decisions_with_the_arch_vocabulary() -> None:
    req = StudyRequest.parse(params=350e6, gpu="h100", arch="llama", seq_len=512, top_k=4)
    config = req.config()
    assert config["vocab_size"] == 32000  # llama-2's tokenizer, not GPT-2's 50257
    cands = finalists(config, sw.get_gpu("h100"), None)
    keys = [(c["shape"]["hidden_size"], c["shape"]["head_dim"],
             c["shape"]["num_key_value_heads"], c["shape"]["num_hidden_layers"]) for c in cands]
    # one (h, d, kv) decision fits this budget's constraints, so its depths are the finalists:
    # no two finalists are the same shape with another vocabulary padding or FFN
    assert len(keys) == len(set(keys)) >= 2
