"""The declared Rule entry: a rule added as one block is run, priced and ordered like the
built-in ones, and its price is the cost model's (through the shared ops)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shapewise import ModelShape, estimate, gemm_time, get_gpu
from shapewise.check.rules import (
    RULE_ENTRIES,
    RULE_NAMES,
    RULES,
    Change,
    Rule,
    register,
    run_rules,
    shape_context,
)
from shapewise.cost.price import price
from shapewise.ops import Gemm

A100 = get_gpu("a100")
DOC = """Toy: vocabulary a multiple of 64.

    Why: a test of the Rule machinery. Fix: the next multiple.
    """


@pytest.fixture
def toy_rules() -> Iterator[list[str]]:
    """Rules registered by a test, taken out of the registry afterwards."""
    added: list[str] = []
    yield added
    for rule_id in added:
        for table in (RULES, RULE_NAMES, RULE_ENTRIES):
            table.pop(rule_id, None)


def gpt2() -> ModelShape:
    return ModelShape.gpt(hidden_size=768, num_attention_heads=12, num_hidden_layers=12,
                          vocab_size=50257)


def test_a_declared_rule_is_run_priced_and_ordered(toy_rules: list[str]) -> None:
    fn = register(Rule(
        id="SW990", name="toy-vocab", field="vocab_size", doc=DOC,
        applies=lambda c: c.shape is not None and c.shape.vocab_size % 64 != 0,
        fix=lambda c: -(-c.shape.vocab_size // 64) * 64,
        change=lambda c, fix: Change(shape={"vocab_size": fix}),
        kernels=("logits",), kernel="logits GEMM", basis="time",
        message=lambda c, fix: f"vocab_size {c.shape.vocab_size}: use {fix}",
    ))
    toy_rules.append("SW990")
    assert fn.__name__ == "toy_vocab" and "Why" in (fn.__doc__ or "")
    assert list(RULES) == sorted(RULES) and RULE_NAMES["SW990"] == "toy-vocab"
    ctx = shape_context(gpt2(), gpu=A100, seq_len=1024)
    (f,) = run_rules(ctx, ["SW990"])
    assert (f.rule_id, f.field, f.value, f.fix, f.kernel) == ("SW990", "vocab_size", 50257,
                                                              50304, "logits GEMM")
    old = estimate(gpt2(), gpu=A100, seq_len=1024)
    new = estimate(gpt2().replace(vocab_size=50304), gpu=A100, seq_len=1024)
    assert f.step_speedup == pytest.approx(old.step_time_s / new.step_time_s)
    # a warning when it saves >= 2% of the step, an info below
    assert f.step_speedup > 1
    assert f.severity == ("warning" if 1 - 1 / f.step_speedup >= 0.02 else "info")
    assert f.gpu == A100.id and f.rule == "toy-vocab"
    assert fn(shape_context(gpt2().replace(vocab_size=50304), gpu=A100, seq_len=1024)) == []


def test_error_rules_are_unpriced_and_only_if_faster_drops_slow_fixes(
        toy_rules: list[str]) -> None:
    register(Rule(id="SW991", name="toy-error", field="num_hidden_layers", doc=DOC,
                  severity="error", applies=lambda c: True, fix=lambda c: 13,
                  message=lambda c, fix: "always"))
    register(Rule(id="SW992", name="toy-slower", field="vocab_size", doc=DOC,
                  applies=lambda c: True, fix=lambda c: 2 * c.shape.vocab_size,
                  change=lambda c, fix: Change(shape={"vocab_size": fix}),
                  only_if_faster=True, message=lambda c, fix: "never shown"))
    toy_rules += ["SW991", "SW992"]
    ctx = shape_context(gpt2(), gpu=A100, seq_len=1024)
    (f,) = run_rules(ctx, ["SW991", "SW992"])
    assert f.severity == "error" and f.step_speedup is None and f.value == 12
    assert RULES["SW992"](ctx) == []  # dropped by the rule itself, not only by run_rules


def test_register_refuses_reused_ids_and_undocumented_rules() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(Rule(id="SW001", name="again", doc=DOC, message=lambda c, fix: ""))
    with pytest.raises(ValueError, match="Why"):
        register(Rule(id="SW993", name="bare", doc="no reasons", message=lambda c, fix: ""))
    assert "SW993" not in RULES


def test_rules_price_kernels_through_the_shared_ops() -> None:
    ctx = shape_context(gpt2(), gpu=A100, seq_len=1024)
    g = Gemm(m=1024, n=50257, k=768)
    assert ctx.gemm(1024, 50257, 768) == price(g, A100) == gemm_time(1024, 50257, 768,
                                                                     gpu=A100)
