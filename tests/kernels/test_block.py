"""The torch block and head that ``tune`` times: the layer the cost model prices, checked
against the parameter count, a float64 reference for GQA, and causality."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from shapewise.kernels.block import (  # noqa: E402
    Block,
    Head,
    block_workload,
    head_workload,
    sdpa,
    step_timings,
)
from shapewise.model.params import count_params  # noqa: E402
from shapewise.model.shape import ModelShape  # noqa: E402

SHAPES = {
    "gpt": ModelShape.gpt(hidden_size=96, num_attention_heads=6, num_hidden_layers=2,
                          vocab_size=1000, max_position_embeddings=64),
    "llama-gqa": ModelShape.llama(hidden_size=128, num_attention_heads=8,
                                  num_key_value_heads=2, num_hidden_layers=2,
                                  intermediate_size=344, vocab_size=1000),
    "qwen-bias": ModelShape.llama(hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                                  qkv_bias=True, vocab_size=512),
    "neox": ModelShape.gpt(hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                           position_embedding="rotary", rotary_pct=0.25,
                           parallel_residual=True, tie_word_embeddings=False, vocab_size=256),
    "vit": ModelShape.vit(hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                          image_size=32, patch_size=8, num_labels=10),
}


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("tp", [1, 2])
def test_block_holds_one_layers_parameters(name: str, tp: int) -> None:
    """Per rank: count_params(L=2) − count_params(L=1) is one layer, an independent count."""
    s = SHAPES[name]
    one = s.replace(num_hidden_layers=1)
    per_layer = count_params(s, tp=tp) - count_params(one, tp=tp)
    assert _numel(Block(s, seq_len=16, tp=tp)) == per_layer


@pytest.mark.parametrize("name", ["gpt", "llama-gqa", "vit"])
def test_head_holds_the_output_layer(name: str) -> None:
    s = SHAPES[name]
    head = Head(s)
    h = s.hidden_size
    norm = 2 * h if s.norm == "layernorm" and s.bias else h  # weight (+ bias)
    # a ViT's 10-class classifier with its bias; a text model's logits matrix (tied or not)
    want = norm + (h * 10 + 10 if s.arch == "vit" else h * s.vocab_size)
    assert _numel(head) == want


def test_gqa_attention_matches_float64_reference() -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 8, 17, 16, generator=g)
    k = torch.randn(2, 2, 17, 16, generator=g)
    v = torch.randn(2, 2, 17, 16, generator=g)
    out = sdpa(q, k, v, causal=True)
    qd, kd, vd = (t.double() for t in (q, k, v))
    kd, vd = kd.repeat_interleave(4, dim=1), vd.repeat_interleave(4, dim=1)
    scores = qd @ kd.transpose(-1, -2) / 16**0.5
    scores = scores.masked_fill(torch.ones(17, 17, dtype=torch.bool).triu(1), float("-inf"))
    ref = scores.softmax(-1) @ vd
    assert ((out.double() - ref).norm() / ref.norm()).item() < 1e-5


@pytest.mark.parametrize("name,causal", [("llama-gqa", True), ("gpt", True), ("vit", False)])
def test_block_is_causal_for_decoders_only(name: str, causal: bool) -> None:
    s = SHAPES[name]
    seq = s.seq_len if s.arch == "vit" else 12
    block = Block(s, seq_len=seq).double()
    x = torch.randn(2, seq, s.hidden_size, dtype=torch.float64)
    y = block(x)
    x2 = x.clone()
    x2[:, -1] = torch.randn_like(x2[:, -1])  # change only the last token (not by a
    # constant: LayerNorm removes that)
    y2 = block(x2)
    same_before = torch.allclose(y[:, :-1], y2[:, :-1])
    assert same_before == causal
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", list(SHAPES))
def test_workloads_run_forward_and_backward(name: str) -> None:
    s = SHAPES[name]
    seq = s.seq_len if s.arch == "vit" else 16
    for make in (block_workload, head_workload):
        w = make(s, micro_batch=2, seq_len=seq, tp=2 if name != "qwen-bias" else 1)
        w.refresh()
        w.step()
        assert w.tokens == 2 * seq


def test_step_timings_yield_one_per_repeat_and_stop_early() -> None:
    s = SHAPES["llama-gqa"]
    gen = step_timings(s, micro_batch=1, seq_len=16, tp=1, device="cpu", dtype="fp32",
                       repeats=5)
    first = next(gen)
    gen.close()  # a pruned trial abandons the rest
    assert first.block_s > 0 and first.head_s > 0 and first.method == "torch.utils.benchmark"
