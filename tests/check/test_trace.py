"""The meta-device tracer: which GEMMs and attention calls a live module runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from shapewise.check.trace import Trace, fold_name, trace_module  # noqa: E402
from shapewise.errors import InputError  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tiny_gpt import GPT, GPTConfig  # noqa: E402


def _by(trace: Trace, name: str, phase: str = "forward") -> list:
    return [g for g in trace.gemms if g.name == name and g.phase == phase]


def test_fold_name() -> None:
    assert fold_name("transformer.h.11.mlp.c_fc") == "transformer.h.*.mlp.c_fc"
    assert fold_name("layers.0") == "layers.*"
    assert fold_name("0.attn") == "*.attn"
    assert fold_name("lm_head") == "lm_head"


def test_tiny_gpt_gemms_attention_and_embeddings() -> None:
    cfg = GPTConfig(n_layer=3, n_head=12, n_embd=768)
    with torch.device("meta"):
        model = GPT(cfg)
    tr = trace_module(model, micro_batch=2, seq_len=512)
    T = 2 * 512
    (qkv,) = _by(tr, "transformer.h.*.attn.c_attn")
    assert (qkv.m, qkv.n, qkv.k, qkv.count) == (T, 3 * 768, 768, 3)
    (fc,) = _by(tr, "transformer.h.*.mlp.c_fc")
    assert (fc.m, fc.n, fc.k) == (T, 4 * 768, 768)
    (lm,) = _by(tr, "lm_head")
    assert (lm.m, lm.n, lm.k, lm.count) == (T, 50257, 768, 1)
    # each forward GEMM has its two backward GEMMs, named after it
    back = _by(tr, "lm_head", "backward")
    assert sorted((g.m, g.n, g.k) for g in back) == sorted([(T, 768, 50257), (50257, 768, T)])
    assert sum(g.count for g in tr.gemms if g.phase == "backward") == 2 * sum(
        g.count for g in tr.gemms if g.phase == "forward")
    (att,) = tr.attentions
    assert (att.batch, att.heads, att.seq_len, att.head_dim, att.causal, att.count) == (
        2, 12, 512, 64, True, 3)
    assert att.name == "transformer.h.*.attn"
    assert ("transformer.wte", 50257, 768) in tr.embeddings
    assert tr.backward and (tr.micro_batch, tr.seq_len) == (2, 512)


def test_seq_len_from_the_model_config() -> None:
    with torch.device("meta"):
        model = GPT(GPTConfig(n_layer=1, block_size=256))
    tr = trace_module(model)
    assert tr.seq_len == 256 and tr.micro_batch == 1 and not tr.notes


def test_a_sequence_past_the_position_table_is_an_error() -> None:
    with torch.device("meta"):
        model = GPT(GPTConfig(n_layer=1, block_size=256))
    with pytest.raises(InputError, match=r"^seq_len: 1024 exceeds the model's context 256"):
        trace_module(model, seq_len=1024)
    assert trace_module(model, seq_len=128).seq_len == 128


def test_live_cpu_model_is_left_untouched() -> None:
    model = GPT(GPTConfig(n_layer=1, n_embd=64, n_head=2, vocab_size=1000, block_size=32))
    before = {n: (p.device, p.data_ptr()) for n, p in model.named_parameters()}
    tr = trace_module(model, micro_batch=2)
    assert _by(tr, "lm_head")[0].n == 1000
    assert {n: (p.device, p.data_ptr()) for n, p in model.named_parameters()} == before
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_tracing_allocates_no_weight_memory() -> None:
    """A CPU model with 0.8 GB of weights: tracing it must not copy them (peak RSS)."""
    code = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import torch
        from tiny_gpt import GPT, GPTConfig
        from shapewise.check.trace import trace_module
        with torch.device("meta"):
            model = GPT(GPTConfig(n_layer=2, n_embd=2048, n_head=16, vocab_size=50257))
        model = model.to_empty(device="cpu")  # real CPU weights, written so they are resident
        for p in model.parameters():
            p.data.fill_(0.01)
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        trace_module(model, micro_batch=1, seq_len=64)  # warm torch up first
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        trace = trace_module(model, micro_batch=8, seq_len=1024)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(weights, after - before, len(trace.gemms))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    weights, grown, n_gemms = int(out[0]), int(out[1]), int(out[2])
    assert weights > 700e6 and n_gemms > 0
    assert grown < 0.1 * weights, f"tracing grew the peak RSS by {grown / 1e6:.0f} MB"


def test_meta_model_of_a_billion_parameters_traces_in_seconds() -> None:
    with torch.device("meta"):
        model = GPT(GPTConfig(n_layer=24, n_embd=2048, n_head=16, vocab_size=50257,
                              block_size=2048))
    tr = trace_module(model, micro_batch=4, seq_len=2048)
    assert _by(tr, "lm_head")[0].m == 8192


def test_handwritten_attention_is_traced_as_batched_gemms() -> None:
    class Attn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(100, 64)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            x = self.emb(idx).view(idx.shape[0], idx.shape[1], 4, 16).transpose(1, 2)
            scores = x @ x.transpose(-1, -2)  # (b, 4, s, s): one bmm of batch 4b
            return scores.softmax(-1) @ x

    tr = trace_module(Attn(), micro_batch=2, seq_len=32)
    bmm = [g for g in tr.gemms if g.phase == "forward"]
    assert {(g.m, g.n, g.k, g.batch) for g in bmm} == {(32, 32, 16, 8), (32, 16, 32, 8)}
    assert tr.attentions == ()


def test_models_without_an_embedding_need_an_example_input() -> None:
    mlp = torch.nn.Sequential(torch.nn.Linear(100, 300), torch.nn.GELU(),
                              torch.nn.Linear(300, 100))
    with pytest.raises(InputError, match="example_input"):
        trace_module(mlp)
    tr = trace_module(mlp, example_input=torch.randn(8, 128, 100))
    assert {(g.name, g.m, g.n, g.k) for g in tr.gemms if g.phase == "forward"} == {
        ("0", 1024, 300, 100), ("2", 1024, 100, 300)}
    assert (tr.micro_batch, tr.seq_len) == (8, 128)
    tr2 = trace_module(mlp, example_input=lambda b, s: torch.randn(b, s, 100),
                       micro_batch=2, seq_len=64)
    assert {g.m for g in tr2.gemms if g.phase == "forward"} == {128}


def test_dict_inputs_and_an_untraceable_model() -> None:
    class Kw(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(32, 64)

        def forward(self, *, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

    tr = trace_module(Kw(), example_input={"x": torch.randn(4, 32)})
    assert [(g.m, g.n, g.k) for g in tr.gemms if g.phase == "forward"] == [(4, 64, 32)]

    class DataDependent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(10, 8)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.emb(idx)[: int(idx.max())]  # reads data: impossible on meta

    with pytest.raises(InputError, match="cannot trace DataDependent"):
        trace_module(DataDependent())


def test_hf_gpt2_model_traces() -> None:
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2))
    model.train()
    model.config.use_cache = False  # what Trainer does: exercises the data-dependent checks
    tr = trace_module(model, micro_batch=2, seq_len=128)
    assert _by(tr, "lm_head")[0].n == 50257
    assert tr.attentions and tr.attentions[0].head_dim == 64
    assert tr.seq_len == 128
