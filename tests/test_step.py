"""estimate(): the step's kernels, their FLOPs, the paper's effects, bad input."""

from __future__ import annotations

import pytest

import shapewise as sw
from shapewise.errors import InputError
from shapewise.model.presets import get_preset


def gpt27(heads: int = 20, vocab: int = 50257) -> sw.ModelShape:
    return sw.ModelShape.gpt(hidden_size=2560, num_attention_heads=heads, num_hidden_layers=32,
                             vocab_size=vocab, max_position_embeddings=2048)


@pytest.mark.parametrize("preset", ["gpt2", "llama-2-7b", "pythia-2.8b", "mistral-7b",
                                    "qwen2-0.5b", "vit-base-16"])
@pytest.mark.parametrize("recompute", [False, True])
def test_breakdown_flops_equal_model_flops(preset: str, recompute: bool) -> None:
    shape = get_preset(preset)
    seq = None if shape.arch == "vit" else 1024
    est = sw.estimate(shape, gpu="h100", micro_batch=2, seq_len=seq, recompute=recompute)
    counted = sum(op.flops * op.count for op in est.breakdown)
    model = sw.step_flops(shape, micro_batch=2, seq_len=est.seq_len)["total"]
    if shape.arch == "vit":
        # the 6N convention counts the patch embedding's input gradient, which no kernel
        # computes (pixels need no gradient): the step prices 2 of its 3 GEMMs
        c, p, h = shape.num_channels, shape.patch_size, shape.hidden_size
        counted += 2.0 * 2 * shape.num_patches * c * p * p * h
    assert counted == pytest.approx(model, rel=1e-9)
    assert est.flops_per_step == pytest.approx(model)
    # one GPU, one micro-batch: the kernels, then the optimizer step and the host overheads
    # (#10: a step is priced as it runs, not as its kernels alone)
    assert est.step_time_s == pytest.approx(sum(op.total_s for op in est.breakdown)
                                            + est.categories["optimizer"]
                                            + est.categories["overhead"])
    assert est.tokens_per_s == pytest.approx(2 * est.seq_len / est.step_time_s)
    assert 0 < est.mfu < 1


def test_vit_backbone_prices_its_pooler() -> None:
    backbone = sw.ModelShape.vit(hidden_size=768, num_attention_heads=12, num_hidden_layers=12,
                                 num_labels=0, pooler=True)
    est = sw.estimate(backbone, gpu="h100", micro_batch=8)
    assert "pooler" in {op.name for op in est.breakdown}
    assert "classifier" not in {op.name for op in est.breakdown}
    c, p, h = backbone.num_channels, backbone.patch_size, backbone.hidden_size
    counted = sum(op.flops * op.count for op in est.breakdown)
    counted += 2.0 * 8 * backbone.num_patches * c * p * p * h  # patch input grad (6N counts it)
    assert counted == pytest.approx(est.flops_per_step, rel=1e-9)


@pytest.mark.parametrize("seq", [4096, 16384, 32768])
def test_sliding_window_is_priced_as_counted(seq: int) -> None:
    # Mistral-7B's 4096-token window: past it, FlashAttention skips the key blocks outside
    # the window, so the kernels' FLOPs and the MFU numerator must both use it
    shape = get_preset("mistral-7b")
    est = sw.estimate(shape, gpu="h100", seq_len=seq)
    counted = sum(op.flops * op.count for op in est.breakdown)
    assert counted == pytest.approx(est.flops_per_step, rel=1e-9)
    full = sw.estimate(shape.replace(sliding_window=None), gpu="h100", seq_len=seq)
    att = sum(op.total_s for op in est.breakdown if op.kind == "attention")
    att_full = sum(op.total_s for op in full.breakdown if op.kind == "attention")
    if seq == 4096:
        assert att == pytest.approx(att_full)
    else:  # the window's work grows as s·w − w²/2, full causal attention as s²/2
        work = (seq * 4096 - 4096**2 / 2) / (seq**2 / 2)
        assert att / att_full == pytest.approx(work, rel=0.15)


def test_every_gemm_has_its_two_backward_gemms() -> None:
    est = sw.estimate(get_preset("llama-2-7b"), gpu="h100", seq_len=4096)
    gemms = [op for op in est.breakdown if op.kind == "gemm"]
    for name in {op.name for op in gemms}:
        fwd = [op for op in gemms if op.name == name and op.phase == "forward"]
        bwd = [op for op in gemms if op.name == name and op.phase == "backward"]
        assert len(fwd) == 1 and len(bwd) == 2
        m, n, k = fwd[0].shape
        assert {bwd[0].shape, bwd[1].shape} == {(m, k, n), (k, n, m)}
    qkv = next(op for op in gemms if op.name == "qkv_proj" and op.phase == "forward")
    assert qkv.shape == (4096, 3 * 4096, 4096) and qkv.count == 32


def test_recompute_costs_time_not_model_flops() -> None:
    shape = get_preset("llama-2-7b")
    a = sw.estimate(shape, gpu="h100", seq_len=4096)
    b = sw.estimate(shape, gpu="h100", seq_len=4096, recompute=True)
    assert b.step_time_s > 1.2 * a.step_time_s
    assert b.flops_per_step == a.flops_per_step and b.mfu < a.mfu
    assert b.memory["activations"] < a.memory["activations"]


def test_source_paper_effects() -> None:
    # 2.7B GPT: 20 heads (head dim 128) beats 32 heads (head dim 80)
    assert (sw.estimate(gpt27(20), gpu="a100", seq_len=2048).tokens_per_s
            > sw.estimate(gpt27(32), gpu="a100", seq_len=2048).tokens_per_s)
    # vocabulary 50304 beats 50257
    assert (sw.estimate(gpt27(vocab=50304), gpu="a100", seq_len=2048).tokens_per_s
            > sw.estimate(gpt27(vocab=50257), gpu="a100", seq_len=2048).tokens_per_s)
    # SwiGLU FFN 11008 beats 8/3·4096 ≈ 10923 for h=4096 on H100
    def llama(f: int) -> float:
        s = sw.ModelShape.llama(hidden_size=4096, num_attention_heads=32, num_hidden_layers=32,
                                intermediate_size=f)
        return sw.estimate(s, gpu="h100", seq_len=4096).tokens_per_s
    assert llama(11008) > llama(10923)


def test_tensor_parallel_adds_allreduces_and_splits_work() -> None:
    shape = get_preset("llama-2-7b")
    t1 = sw.estimate(shape, gpu="h100", seq_len=4096)
    t8 = sw.estimate(shape, gpu="h100", seq_len=4096, tp=8)
    assert any(op.kind == "comm" for op in t8.breakdown)
    assert not any(op.kind == "comm" for op in t1.breakdown)
    assert t8.step_time_s < t1.step_time_s
    assert t8.tokens_per_s < t1.tokens_per_s  # communication and smaller GEMMs cost
    assert t8.memory_bytes < t1.memory_bytes


def test_vit_is_not_causal_and_has_fixed_tokens() -> None:
    shape = get_preset("vit-base-16")
    est = sw.estimate(shape, gpu="mi250x-gcd", micro_batch=64)
    assert est.seq_len == 197
    att = next(op for op in est.breakdown if op.name == "attention")
    assert att.flops == sw.attention_flops(batch=64, heads=12, seq_len=197, head_dim=64,
                                           causal=False)
    with pytest.raises(InputError, match="seq_len"):
        sw.estimate(shape, gpu="h100", seq_len=512)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"tp": 3}, "tp"), ({"micro_batch": 0}, "micro_batch"), ({"seq_len": -5}, "seq_len"),
     ({"dtype": "fp8", "gpu": "a100"}, "dtype"), ({"gpu": "nope-gpu"}, "gpu"),
     ({"recompute": "yes"}, "recompute")],
)
def test_bad_input_names_the_field(kwargs: dict, field: str) -> None:
    args = {"gpu": "h100", "seq_len": 2048, **kwargs}
    with pytest.raises(InputError, match=field):
        sw.estimate(gpt27(), **args)


def test_tp_must_divide_vocab_with_a_fix() -> None:
    with pytest.raises(InputError, match=r"tp: 2 does not divide vocab_size.*50304"):
        sw.estimate(gpt27(heads=32, vocab=50257), gpu="h100", seq_len=2048, tp=2)


def test_a_step_that_does_not_fit_in_memory_says_so() -> None:
    big = sw.estimate(get_preset("llama-2-7b"), gpu="h100", seq_len=4096)
    assert big.memory_bytes > 80 * 2**30
    note = next(n for n in big.notes if n.startswith("memory:"))
    assert "exceeds the 80 GB of NVIDIA H100" in note and "ZeRO/FSDP" in note
    small = sw.estimate(get_preset("gpt2"), gpu="h100")
    assert not any(n.startswith("memory:") for n in small.notes)
    # the same 7B model split over 8 tensor-parallel ranks fits
    tp8 = sw.estimate(get_preset("llama-2-7b"), gpu="h100", seq_len=4096, tp=8)
    assert not any(n.startswith("memory:") for n in tp8.notes)


def test_a_decoupled_head_dim_is_priced_at_its_own_width() -> None:
    # Mistral-NeMo's layout at a small depth: h 5120, 32 heads of 128 (a·d = 4096)
    nemo = sw.ModelShape.llama(hidden_size=5120, num_attention_heads=32,
                               num_key_value_heads=8, head_dim=128, num_hidden_layers=2,
                               intermediate_size=14336, vocab_size=131072,
                               max_position_embeddings=4096)
    est = sw.estimate(nemo, gpu="h100", seq_len=4096, tp=2)
    ops = {(op.name, op.phase): op for op in est.breakdown}
    assert ops[("qkv_proj", "forward")].shape == (4096, (32 + 2 * 8) * 128 // 2, 5120)
    assert ops[("out_proj", "forward")].shape == (4096, 5120, 32 * 128 // 2)
    assert ops[("attention", "forward")].shape == (1, 16, 4096, 128)
    counted = sum(op.flops * op.count for op in est.breakdown)  # one rank's
    assert 2 * counted == pytest.approx(est.flops_per_step, rel=1e-9)
    # coupled: the same model with head_dim h/a = 160 is wider in attention
    wide = sw.estimate(nemo.replace(head_dim=None), gpu="h100", seq_len=4096, tp=2)
    assert wide.flops_per_step > est.flops_per_step
