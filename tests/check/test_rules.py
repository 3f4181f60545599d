"""Each rule on its own: when it fires, the fix it proposes, and the speedup behind it.

Speedups are checked against the cost model directly (estimate / gemm_time of the old and
new shapes), so a rule cannot report a number the cost model does not give.
"""

from __future__ import annotations

import inspect

import pytest

from shapewise import ModelShape, estimate, get_gpu
from shapewise.check import rules as R
from shapewise.check.rules import (
    RULE_NAMES,
    RULES,
    CheckContext,
    Finding,
    run_rules,
    shape_context,
)
from shapewise.check.trace import Trace, TracedAttention, TracedGemm

A100 = get_gpu("a100")


def gpt2(**kw: object) -> ModelShape:
    fields: dict[str, object] = dict(hidden_size=768, num_attention_heads=12,
                                     num_hidden_layers=12, vocab_size=50257)
    fields.update(kw)
    return ModelShape.gpt(**fields)


def llama7b(**kw: object) -> ModelShape:
    fields: dict[str, object] = dict(hidden_size=4096, num_attention_heads=32,
                                     num_hidden_layers=32, intermediate_size=11008,
                                     vocab_size=32000)
    fields.update(kw)
    return ModelShape.llama(**fields)


def ids(findings: list[Finding]) -> list[str]:
    return [f.rule_id for f in findings]


def only(findings: list[Finding], rule_id: str) -> Finding:
    hits = [f for f in findings if f.rule_id == rule_id]
    assert len(hits) == 1, findings
    return hits[0]


# ------------------------------------------------------------------------------ registry
def test_registry_ids_are_stable_documented_and_named() -> None:
    # SW001-SW011 the shape rules, SW012-SW014 the MoE rules, SW016-SW019 the plan rules
    assert list(RULES)[:14] == [f"SW{i:03d}" for i in range(1, 15)]
    assert {"SW016", "SW017", "SW018", "SW019"} <= set(RULES)
    assert list(RULES) == sorted(RULES)
    assert set(RULE_NAMES) == set(RULES)
    for rule_id, fn in RULES.items():
        doc = inspect.getdoc(fn)
        assert doc and "Why" in doc and "Fix" in doc, rule_id
    assert len(set(RULE_NAMES.values())) == len(RULES)


def test_unknown_rule_is_an_input_error() -> None:
    ctx = shape_context(gpt2(), gpu=A100)
    with pytest.raises(ValueError, match="SW999"):
        run_rules(ctx, ["SW999"])


def test_finding_summary_and_dict() -> None:
    f = Finding(rule_id="SW001", severity="warning", message="m", field="vocab_size",
                value=50257, fix=50304, gemm_speedup=1.3, step_speedup=1.04,
                kernel="logits GEMM")
    assert f.summary() == "vocab_size 50257 → 50304: logits GEMM 1.30× faster, step 4.0% faster"
    assert f.rule == "vocab-alignment"
    d = f.to_dict()
    assert d["rule"] == "vocab-alignment" and d["fix"] == 50304 and d["summary"] == f.summary()
    assert abs(f.step_loss - (1 - 1 / 1.04)) < 1e-12
    unpriced = Finding(rule_id="SW005", severity="error", message="m", field="a", value=12,
                       fix=None)
    assert unpriced.summary() == "a 12" and unpriced.step_loss == 0


# ------------------------------------------------------------------------ SW001 vocab
def test_sw001_gpt2_vocab_padded_to_50304_with_cost_model_speedups() -> None:
    ctx = shape_context(gpt2(), gpu=A100, micro_batch=4, seq_len=1024)
    f = only(R.vocab_alignment(ctx), "SW001")
    assert (f.field, f.value, f.fix, f.basis) == ("vocab_size", 50257, 50304, "time")
    old = estimate(gpt2(), gpu=A100, micro_batch=4, seq_len=1024)
    new = estimate(gpt2(vocab_size=50304), gpu=A100, micro_batch=4, seq_len=1024)

    def logits(e):  # type: ignore[no-untyped-def]
        return sum(op.total_s for op in e.breakdown if op.name == "logits")

    assert f.gemm_speedup == pytest.approx(logits(old) / logits(new))
    assert f.step_speedup == pytest.approx(old.step_time_s / new.step_time_s)
    # the step also holds the optimizer and a fixed host overhead per step (#10): 2.2 ms
    # saved of a ~130 ms step at micro-batch 4
    assert f.gemm_speedup > 1.2 and f.step_speedup > 1.01
    assert f.severity == "warning"  # 50257 is not even 16-byte aligned


def test_sw001_aligned_vocab_is_clean_and_tp_needs_64_tp() -> None:
    assert R.vocab_alignment(shape_context(gpt2(vocab_size=50304), gpu=A100)) == []
    # 50304 = 64·786 is not a multiple of 64·4: each rank's slice of 12576 is misaligned
    f = only(R.vocab_alignment(shape_context(llama7b(vocab_size=50304), gpu=A100, tp=4,
                                             seq_len=2048)), "SW001")
    assert f.fix == 50432 and f.fix % 256 == 0
    assert "tp 4" in f.message


def test_sw001_vocab_that_tp_cannot_split_is_unpriced() -> None:
    ctx = shape_context(gpt2(num_attention_heads=16, hidden_size=1024), gpu=A100, tp=2)
    assert ctx.estimate is None  # 50257 is odd: no step at tp 2
    f = only(R.vocab_alignment(ctx), "SW001")
    assert f.fix == 50304 and f.step_speedup is None and "SW006" in f.detail


# ----------------------------------------------------------------------- SW002 hidden
def test_sw002_hidden_size_rounded_to_a_multiple_of_64_the_heads_divide() -> None:
    shape = gpt2(hidden_size=1000, num_attention_heads=8, vocab_size=50304)
    f = only(R.hidden_alignment(shape_context(shape, gpu=A100, seq_len=1024)), "SW002")
    assert f.fix % 64 == 0 and f.fix % 8 == 0 and (f.fix // 8) % 8 == 0
    assert f.fix == 1024 and f.basis == "throughput" and f.step_speedup is not None
    assert f.severity in ("info", "warning")
    assert R.hidden_alignment(shape_context(gpt2(), gpu=A100)) == []


def test_sw002_keeps_ten_heads_with_a_16_byte_head_dim() -> None:
    shape = gpt2(hidden_size=1000, num_attention_heads=10, vocab_size=50304)
    f = only(R.hidden_alignment(shape_context(shape, gpu=A100, seq_len=1024)), "SW002")
    assert f.fix == 960  # lcm(64, 10·8) = 320: 960 is nearer than 1280; head dim 96


def test_sw002_regroups_heads_when_the_multiple_is_far() -> None:
    shape = gpt2(hidden_size=200, num_attention_heads=25, vocab_size=50304)  # lcm: 1600
    f = only(R.hidden_alignment(shape_context(shape, gpu=A100, seq_len=1024)), "SW002")
    assert f.fix == 256 and "heads (head_dim" in f.message


# --------------------------------------------------------------------- SW003 head dim
def test_sw003_pythia_2_8b_head_dim_80_suggests_a_multiple_of_64() -> None:
    pythia = ModelShape.gpt(hidden_size=2560, num_attention_heads=32, num_hidden_layers=32,
                            vocab_size=50304, position_embedding="rotary", rotary_pct=0.25,
                            tie_word_embeddings=False, parallel_residual=True,
                            max_position_embeddings=2048)
    ctx = shape_context(pythia, gpu=A100, seq_len=2048)
    f = only(R.head_dim(ctx), "SW003")
    assert f.field == "num_attention_heads" and f.value == 32
    assert 2560 % f.fix == 0 and (2560 // f.fix) % 64 == 0
    new = estimate(pythia.replace(num_attention_heads=f.fix, num_key_value_heads=f.fix),
                   gpu=A100, seq_len=2048)
    assert f.step_speedup == pytest.approx(ctx.estimate.step_time_s / new.step_time_s)
    assert f.gemm_speedup > 1 and f.step_speedup > 1
    assert "head_dim 80" in f.message


def test_sw003_gqa_keeps_its_group_size() -> None:
    shape = llama7b(hidden_size=2560, num_attention_heads=32, num_key_value_heads=8,
                    intermediate_size=6912)
    f = only(R.head_dim(shape_context(shape, gpu=A100, seq_len=2048)), "SW003")
    assert f.fix in (40, 20, 10)
    assert "num_key_value_heads 8 → " in f.message


def test_sw003_head_dim_not_a_multiple_of_8_is_a_warning_even_unfixable() -> None:
    shape = gpt2(hidden_size=1000, num_attention_heads=10, vocab_size=50304)  # d = 100
    f = only(R.head_dim(shape_context(shape, gpu=A100, seq_len=1024)), "SW003")
    assert f.severity == "warning" and f.fix is None and "SW002" in f.message


def test_sw003_a_stated_head_dim_is_fixed_in_place() -> None:
    # a config that states head_dim 72 for h=4096 and 32 heads (a·d = 2304): the fix is
    # the head dim itself, not a head count (h / a says nothing about it)
    shape = llama7b(head_dim=72)
    assert shape.decoupled_head_dim and shape.q_size == 32 * 72
    f = only(R.head_dim(shape_context(shape, gpu=A100, seq_len=2048)), "SW003")
    assert f.field == "head_dim" and f.value == 72 and f.fix in (64, 128)
    assert f.basis == "throughput" and "stated by the config" in f.message
    assert R.head_dim(shape_context(llama7b(hidden_size=5120, head_dim=128), gpu=A100,
                                    seq_len=2048)) == []


def test_sw005_keeps_a_stated_head_dim() -> None:
    shape = llama7b(hidden_size=5120, head_dim=128, num_key_value_heads=8)  # Mistral-NeMo-ish
    ctx = shape_context(shape, gpu=A100, seq_len=2048, tp=3)
    f = only(R.heads_per_rank(ctx), "SW005")
    assert f.fix is not None and f.fix % 3 == 0 and abs(f.fix - 32) <= 3


def test_sw002_with_a_stated_head_dim_moves_only_the_width() -> None:
    shape = llama7b(hidden_size=5000, head_dim=128, intermediate_size=13440)
    f = only(R.hidden_alignment(shape_context(shape, gpu=A100, seq_len=2048)), "SW002")
    assert f.fix % 64 == 0 and abs(f.fix - 5000) < 64 and "heads (head_dim" not in f.message


def test_sw002_far_fix_keeps_a_stated_head_dim() -> None:
    shape = llama7b(hidden_size=100, num_attention_heads=4, num_key_value_heads=4,
                    head_dim=48, intermediate_size=256)
    f = only(R.hidden_alignment(shape_context(shape, gpu=A100, seq_len=2048)), "SW002")
    assert f.fix % 64 == 0 and "heads (head_dim" not in f.message


def test_sw006_does_not_ask_tp_to_split_h_when_the_head_dim_is_stated() -> None:
    shape = llama7b(hidden_size=5120, num_attention_heads=48, num_key_value_heads=48,
                    head_dim=128, intermediate_size=13824, vocab_size=32256)
    ctx = shape_context(shape, gpu=A100, seq_len=2048, tp=3)
    assert ctx.estimate is not None  # priced: tp 3 splits a = 48 and everything else
    assert [f for f in R.tp_divisibility(ctx) if f.field == "hidden_size"] == []


def test_sw003_clean_for_64_and_128() -> None:
    assert R.head_dim(shape_context(gpt2(), gpu=A100)) == []
    assert R.head_dim(shape_context(llama7b(), gpu=A100, seq_len=2048)) == []


# ------------------------------------------------------------------------ SW004 tokens
def test_sw004_tokens_alignment_text_fixes_seq_len() -> None:
    shape = gpt2(vocab_size=50304)
    f = only(R.tokens_alignment(shape_context(shape, gpu=A100, micro_batch=3,
                                              seq_len=1000)), "SW004")
    assert f.field == "seq_len" and (3 * f.fix) % 64 == 0 and f.fix <= 1024
    # learned positions cap the sequence: 1000 rounds down, never past 1024
    f2 = only(R.tokens_alignment(shape_context(shape, gpu=A100, micro_batch=1,
                                               seq_len=1020)), "SW004")
    assert f2.fix == 1024 or f2.fix == 960
    assert R.tokens_alignment(shape_context(shape, gpu=A100, micro_batch=8,
                                            seq_len=1000)) == []  # 8000 = 64·125


def test_sw004_vit_fixes_micro_batch() -> None:
    vit = ModelShape.vit(hidden_size=768, num_attention_heads=12, num_hidden_layers=12)
    f = only(R.tokens_alignment(shape_context(vit, gpu=A100, micro_batch=4)), "SW004")
    assert f.field == "micro_batch" and (f.fix * 197) % 8 == 0 and f.fix > 4


# ---------------------------------------------------------------- SW005-SW007 crashes
def test_sw005_heads_not_divisible_by_tp_is_an_error_with_a_fix() -> None:
    ctx = shape_context(gpt2(vocab_size=50304), gpu=A100, tp=8)
    f = only(R.heads_per_rank(ctx), "SW005")
    assert f.severity == "error" and f.fix % 8 == 0 and 768 % f.fix == 0
    assert "(b·a)/t" in f.message
    assert R.heads_per_rank(shape_context(gpt2(vocab_size=50304), gpu=A100, tp=4)) == []


def test_sw006_every_size_tp_cannot_split() -> None:
    shape = llama7b(num_key_value_heads=8, intermediate_size=11000, vocab_size=32001)
    found = R.tp_divisibility(shape_context(shape, gpu=A100, tp=16, seq_len=2048))
    by_field = {f.field: f for f in found}
    assert set(by_field) == {"num_key_value_heads", "intermediate_size", "vocab_size"}
    assert all(f.severity == "error" for f in found)
    assert by_field["vocab_size"].fix == 32768  # next multiple of 64·16
    assert by_field["intermediate_size"].fix % (64 * 16) == 0
    assert by_field["num_key_value_heads"].fix == 16  # a multiple of 16 dividing 32 heads


def test_sw007_layers_divisible_by_pipeline_stages() -> None:
    ctx = shape_context(gpt2(vocab_size=50304), gpu=A100, pipeline_stages=5)
    f = only(R.pipeline_layers(ctx), "SW007")
    assert f.severity == "error" and f.fix == 10 and "2, 3, 4, 6" in f.message
    assert R.pipeline_layers(shape_context(gpt2(), gpu=A100, pipeline_stages=4)) == []


# --------------------------------------------------------------------------- SW008 FFN
def test_sw008_swiglu_8_thirds_h_is_misaligned_and_a_nearby_size_is_faster() -> None:
    shape = llama7b(intermediate_size=10922)  # 8/3·4096 taken literally (co-design rule 6)
    ctx = shape_context(shape, gpu=A100, micro_batch=4, seq_len=4096)
    f = only(R.ffn_size(ctx), "SW008")
    assert f.fix % 64 == 0 and abs(f.fix - 10922) <= 0.05 * 10922
    assert f.gemm_speedup > 1.2 and f.severity == "warning" and f.basis == "throughput"
    assert "8/3·h" in f.message


def test_sw008_llama_11008_is_clean() -> None:
    assert R.ffn_size(shape_context(llama7b(), gpu=A100, seq_len=4096)) == []


# ------------------------------------------------------------------------ SW009 waves
def test_sw009_flags_a_traced_gemm_with_a_mostly_empty_last_wave() -> None:
    # 2048×1792 output in 64×64 tiles = 896 tiles on 108 SMs: 9 waves, the last 30% full
    fwd = TracedGemm("proj", "forward", 2048, 1792, 1024)
    trace = Trace(model="M", gemms=(fwd, TracedGemm("proj", "backward", 2048, 1024, 1792),
                                    TracedGemm("proj", "backward", 1792, 1024, 2048)),
                  attentions=())
    ctx = CheckContext(gpu=A100, trace=trace)
    f = only(R.wave_quantization(ctx), "SW009")
    assert f.field == "proj.n" and f.value == 1792 and f.fix % 64 == 0
    assert "last 30% full" in f.message and f.gemm_speedup >= R.WAVE_MIN_GAIN
    assert f.step_speedup <= f.gemm_speedup + 1e-9  # the step holds only this GEMM


def test_sw009_full_waves_are_clean() -> None:
    trace = Trace(model="M", gemms=(TracedGemm("p", "forward", 8192, 8192, 8192),),
                  attentions=())
    assert R.wave_quantization(CheckContext(gpu=A100, trace=trace)) == []


# --------------------------------------------------------------------- SW010 tp size
def test_sw010_tp_larger_than_memory_needs() -> None:
    ctx = shape_context(llama7b(), gpu=A100, tp=8, seq_len=4096)
    f = only(R.tp_oversized(ctx), "SW010")
    assert f.field == "tp" and f.fix < 8 and 8 % f.fix == 0
    new = estimate(llama7b(), gpu=A100, tp=f.fix, seq_len=4096)
    assert new.fits  # plan's own test (memory_fit), not a second budget
    assert f.step_speedup == pytest.approx(new.tokens_per_s / ctx.estimate.tokens_per_s)
    assert f.basis == "tokens-per-gpu"
    # a 70B-class model needs its tp: nothing smaller fits
    big = llama7b(hidden_size=8192, num_attention_heads=64, num_key_value_heads=8,
                  num_hidden_layers=80, intermediate_size=28672)
    assert R.tp_oversized(shape_context(big, gpu=A100, tp=8, seq_len=4096)) == []
    assert R.tp_oversized(shape_context(llama7b(), gpu=A100, tp=8, seq_len=4096,
                                        pipeline_stages=2)) == []


# --------------------------------------------------------------- traced-only rules
def _traced_gpt(hidden: int, vocab: int) -> Trace:
    T = 4096
    gemms = []
    for name, n, k in (("h.*.attn.c_attn", 3 * hidden, hidden),
                       ("h.*.mlp.c_fc", 4 * hidden, hidden), ("lm_head", vocab, hidden)):
        gemms += [TracedGemm(name, "forward", T, n, k, count=2),
                  TracedGemm(name, "backward", T, k, n, count=2),
                  TracedGemm(name, "backward", n, k, T, count=2)]
    att = TracedAttention("h.*.attn", 4, hidden // 64, hidden // 64, 1024, 1024, 64, True, 2)
    return Trace(model="GPT", gemms=tuple(gemms), attentions=(att,),
                 embeddings=(("wte", vocab, hidden), ("wpe", 1024, hidden)),
                 micro_batch=4, seq_len=1024)


def test_sw001_on_a_trace_finds_the_logits_gemm_by_the_embedding() -> None:
    ctx = CheckContext(gpu=A100, trace=_traced_gpt(768, 50257))
    f = only(R.vocab_alignment(ctx), "SW001")
    assert f.field == "lm_head.vocab_size" and f.fix == 50304 and f.gemm_speedup > 1.2
    lm = [g for g in ctx.trace.gemms if g.name == "lm_head"]
    old = sum(ctx.gemm(g.m, g.n, g.k) * g.count for g in lm)
    new = sum(ctx.gemm(*(50304 if d == 50257 else d for d in (g.m, g.n, g.k))) * g.count
              for g in lm)
    assert f.gemm_speedup == pytest.approx(old / new)


def test_sw011_misaligned_traced_sizes_grouped_by_size() -> None:
    ctx = CheckContext(gpu=A100, trace=_traced_gpt(780, 50304))  # 780: not 16-byte aligned
    found = R.gemm_alignment(ctx)
    assert found and all(f.rule_id == "SW011" for f in found)
    sizes = {f.value for f in found}
    assert 780 in sizes and all(f.fix % 64 == 0 for f in found)
    f780 = next(f for f in found if f.value == 780)
    assert f780.severity == "warning" and "lm_head" in f780.message
    assert R.gemm_alignment(CheckContext(gpu=A100, trace=_traced_gpt(768, 50304))) == []


def test_traced_head_dim_80_suggests_regrouped_heads() -> None:
    att = TracedAttention("attn", 4, 32, 32, 2048, 2048, 80, True, 32)
    trace = Trace(model="M", gemms=(), attentions=(att,))
    f = only(R.head_dim(CheckContext(gpu=A100, trace=trace)), "SW003")
    assert (32 * 80) % f.fix == 0 and (32 * 80 // f.fix) % 64 == 0 and f.gemm_speedup > 1


def test_run_rules_orders_errors_first() -> None:
    ctx = shape_context(gpt2(), gpu=A100, tp=8)
    found = run_rules(ctx)
    severities = [f.severity for f in found]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    assert {"SW005", "SW006", "SW001"} <= set(ids(found))
