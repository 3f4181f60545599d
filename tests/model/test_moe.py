"""Mixture-of-experts and latent-attention shapes: exact counts, FLOPs, config reading, errors.

Each expected count below is derived in a comment from the model's published config.json
(transcribed in tests/fixtures/hf_moe/, see its README), tensor by tensor as transformers
builds the model; test_counts_match_transformers builds the same configs with transformers
on the meta device as an independent check.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shapewise.errors import InputError
from shapewise.model import ModelShape, count_params, flops_per_token, from_hf_config, get_preset
from shapewise.model.flops import gemm_macs_per_token
from shapewise.model.moe import check_ep, describe
from shapewise.model.params import param_breakdown

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf_moe"

# --- Mixtral-8x7B: h 4096, L 32, 32 heads, 8 KV heads of 128, 8 experts of 14336 (SwiGLU),
# top-2, vocab 32000, untied. Per layer: q, o 4096² each; k, v 4096·1024 each; router
# 4096·8; experts 8·3·4096·14336; two RMSNorms 4096. Plus embed_tokens and lm_head
# 32000·4096 each, and the final norm.
_MIX_ATTN = 2 * 4096**2 + 2 * 4096 * 1024
_MIX_REST = 2 * 32000 * 4096 + 4096
_MIX_TOTAL = 32 * (_MIX_ATTN + 4096 * 8 + 8 * 3 * 4096 * 14336 + 2 * 4096) + _MIX_REST
_MIX_ACTIVE = 32 * (_MIX_ATTN + 4096 * 8 + 2 * 3 * 4096 * 14336 + 2 * 4096) + _MIX_REST

# --- Qwen1.5-MoE-A2.7B: h 2048, L 24, 16 heads (MHA) with q/k/v biases, 60 experts of 1408,
# top-4, one shared expert of 5632 with its h×1 sigmoid gate, vocab 151936, untied.
_QW_LAYER_FIXED = (4 * 2048**2 + 3 * 2048  # q, k, v, o + q/k/v biases
                   + 2048 * 60  # router
                   + 3 * 2048 * 5632 + 2048  # shared expert + its gate
                   + 2 * 2048)  # norms
_QW_TOTAL = 24 * (_QW_LAYER_FIXED + 60 * 3 * 2048 * 1408) + 2 * 151936 * 2048 + 2048
_QW_ACTIVE = 24 * (_QW_LAYER_FIXED + 4 * 3 * 2048 * 1408) + 2 * 151936 * 2048 + 2048

# --- DeepSeek-V2-Lite: h 2048, L 27, 16 heads; MLA with no q compression (q_lora_rank null):
# q_proj 2048·16·(128 + 64), kv_a_proj 2048·(512 + 64), kv_a_layernorm 512,
# kv_b_proj 512·16·(128 + 128), o_proj 16·128·2048. Layer 0 dense (first_k_dense_replace 1):
# SwiGLU 3·2048·10944. Layers 1-26: router 2048·64, 64 experts of 1408, top-6, 2 shared
# experts as one MLP of 2·1408 = 2816. Vocab 102400, untied.
_DS_ATTN = 2048 * 16 * 192 + 2048 * 576 + 512 + 512 * 16 * 256 + 16 * 128 * 2048 + 2 * 2048
_DS_MOE_FIXED = 2048 * 64 + 3 * 2048 * 2816
_DS_TOTAL = (27 * _DS_ATTN + 3 * 2048 * 10944 + 26 * (_DS_MOE_FIXED + 64 * 3 * 2048 * 1408)
             + 2 * 102400 * 2048 + 2048)
_DS_ACTIVE = (27 * _DS_ATTN + 3 * 2048 * 10944 + 26 * (_DS_MOE_FIXED + 6 * 3 * 2048 * 1408)
              + 2 * 102400 * 2048 + 2048)

# --- OLMoE-1B-7B: h 2048, L 16, 16 heads (MHA), RMSNorm on all of q (2048) and k (2048),
# 64 experts of 1024, top-8, vocab 50304, untied.
_OL_FIXED = 4 * 2048**2 + 2 * 2048 + 2048 * 64 + 2 * 2048
_OL_TOTAL = 16 * (_OL_FIXED + 64 * 3 * 2048 * 1024) + 2 * 50304 * 2048 + 2048
_OL_ACTIVE = 16 * (_OL_FIXED + 8 * 3 * 2048 * 1024) + 2 * 50304 * 2048 + 2048

# --- gpt-oss-20b: h 2880, L 24, 64 heads and 8 KV heads of 64 (a·d = 4096), biases on q, k,
# v, o, 64 sink logits; router 2880·32 + 32; 32 experts of 2880, each gate_up 2880·5760
# + 5760 and down 2880·2880 + 2880; top-4; vocab 201088, untied.
_OSS_ATTN = (2880 * 4096 + 4096) + 2 * (2880 * 512 + 512) + (4096 * 2880 + 2880) + 64
_OSS_EXPERT = 2880 * 5760 + 5760 + 2880 * 2880 + 2880
_OSS_FIXED = _OSS_ATTN + 2880 * 32 + 32 + 2 * 2880
_OSS_TOTAL = 24 * (_OSS_FIXED + 32 * _OSS_EXPERT) + 2 * 201088 * 2880 + 2880
_OSS_ACTIVE = 24 * (_OSS_FIXED + 4 * _OSS_EXPERT) + 2 * 201088 * 2880 + 2880

# fixture -> (total, active, the model card's total and active, in billions)
PUBLISHED = {
    "mixtral-8x7b": (46_702_792_704, 12_879_925_248, 46.7, 12.9),
    "qwen1.5-moe-a2.7b": (14_315_784_192, 2_689_173_504, 14.3, 2.7),
    "deepseek-v2-lite": (15_706_484_224, 2_661_150_208, 15.7, 2.4),
    "olmoe-1b-7b": (6_919_161_856, 1_282_017_280, 6.9, 1.3),
    "gpt-oss-20b": (20_914_757_184, 4_187_440_704, 20.9, 3.6),
    "qwen3-30b-a3b": (30_532_122_624, 3_353_032_704, 30.5, 3.3),
    "deepseek-v3": (671_026_404_352, 37_552_282_624, 671.0, 37.0),
}
DERIVED = {
    "mixtral-8x7b": (_MIX_TOTAL, _MIX_ACTIVE),
    "qwen1.5-moe-a2.7b": (_QW_TOTAL, _QW_ACTIVE),
    "deepseek-v2-lite": (_DS_TOTAL, _DS_ACTIVE),
    "olmoe-1b-7b": (_OL_TOTAL, _OL_ACTIVE),
    "gpt-oss-20b": (_OSS_TOTAL, _OSS_ACTIVE),
}


def shape_of(folder: str) -> ModelShape:
    return from_hf_config(FIXTURES / folder / "config.json")


def test_every_fixture_is_covered() -> None:
    assert {p.name for p in FIXTURES.iterdir() if p.is_dir()} == set(PUBLISHED)


@pytest.mark.parametrize("folder", sorted(PUBLISHED))
def test_exact_total_and_active(folder: str) -> None:
    total, active, card_total, card_active = PUBLISHED[folder]
    shape = shape_of(folder)
    assert count_params(shape) == total
    assert count_params(shape, active=True) == active
    if folder in DERIVED:  # the hand derivation from the config agrees
        assert DERIVED[folder] == (total, active)
    # and both agree with the model card's rounded figures; a card's active count may leave
    # out the input embedding, a lookup (shapewise/model/moe.py): within 3% either way
    assert abs(total / 1e9 - card_total) / card_total < 0.01
    no_input_table = active - shape.vocab_size * shape.hidden_size
    assert min(abs(active / 1e9 / card_active - 1), abs(no_input_table / 1e9 / card_active - 1)) \
        < 0.03


def test_mixtral_acceptance_figures() -> None:
    mixtral = shape_of("mixtral-8x7b")
    assert count_params(mixtral) == 46_702_792_704
    assert count_params(mixtral, active=True) == 12_879_925_248
    assert describe(mixtral) == "8 experts of 14336, top-2"


def test_counts_match_transformers(tmp_path: Path) -> None:
    """transformers builds each fixture on the meta device; its count must equal ours.

    Runs in a subprocess outside the repository, whose top-level ``kernels/`` folder would
    shadow the ``kernels`` package that transformers imports.
    """
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    script = (
        "import json, sys, torch, transformers\n"
        "out = {}\n"
        "for folder in sys.argv[1:]:\n"
        "    cfg = transformers.AutoConfig.from_pretrained(folder)\n"
        "    with torch.device('meta'):\n"
        "        m = transformers.AutoModelForCausalLM.from_config(cfg)\n"
        "    out[folder] = m.num_parameters()\n"
        "print(json.dumps(out))\n"
    )
    folders = [str(FIXTURES / f) for f in sorted(PUBLISHED) if f != "deepseek-v3"]
    run = subprocess.run([sys.executable, "-c", script, *folders], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    counts = json.loads(run.stdout.strip().splitlines()[-1])
    for folder in folders:
        assert counts[folder] == PUBLISHED[Path(folder).name][0], folder


def test_fields_read_from_configs() -> None:
    ds = shape_of("deepseek-v2-lite")
    assert ds.mla and ds.q_lora_rank is None and ds.kv_lora_rank == 512
    assert ds.head_dim == 192 and ds.v_dim == 128 and ds.qk_rope_head_dim == 64
    assert ds.num_dense_layers == 1 and ds.moe_layers == 26
    assert ds.num_shared_experts == 2 and ds.shared_expert_intermediate_size == 2816
    assert ds.router == "softmax" and ds.intermediate_size == 10944
    v3 = shape_of("deepseek-v3")
    assert v3.router == "sigmoid" and v3.q_lora_rank == 1536 and v3.num_dense_layers == 3
    qwen = shape_of("qwen1.5-moe-a2.7b")
    assert qwen.qkv_bias and not qwen.bias and qwen.shared_expert_gate
    assert qwen.moe_intermediate_size == 1408 and qwen.intermediate_size == 5632
    oss = shape_of("gpt-oss-20b")
    assert oss.attention_sinks and oss.router_bias and oss.mlp_bias and oss.q_size == 4096
    assert oss.moe_intermediate_size == 2880 and oss.sliding_window == 128
    assert oss.layer_types == ("sliding_attention", "full_attention") * 12
    assert shape_of("olmoe-1b-7b").qk_norm == "full"
    assert shape_of("qwen3-30b-a3b").qk_norm == "head"


def test_configs_that_are_not_modelled_name_their_field() -> None:
    qwen = json.loads((FIXTURES / "qwen1.5-moe-a2.7b" / "config.json").read_text())
    with pytest.raises(InputError, match=r"^mlp_only_layers: \[3\]"):
        from_hf_config({**qwen, "mlp_only_layers": [3]})
    assert from_hf_config({**qwen, "mlp_only_layers": [0, 1]}).num_dense_layers == 2
    with pytest.raises(InputError, match=r"^decoder_sparse_step: 2"):
        from_hf_config({**qwen, "decoder_sparse_step": 2})
    ds = json.loads((FIXTURES / "deepseek-v2-lite" / "config.json").read_text())
    with pytest.raises(InputError, match=r"^moe_layer_freq: 2"):
        from_hf_config({**ds, "moe_layer_freq": 2})
    with pytest.raises(InputError, match=r"^num_experts_per_tok: missing"):
        from_hf_config({k: v for k, v in ds.items() if k != "num_experts_per_tok"})
    mixtral = json.loads((FIXTURES / "mixtral-8x7b" / "config.json").read_text())
    # the config's own field name in the message
    with pytest.raises(InputError, match=r"^num_experts_per_tok: 9 exceeds num_local_experts 8"):
        from_hf_config({**mixtral, "num_experts_per_tok": 9})


def _moe(**changes: object) -> ModelShape:
    fields: dict[str, object] = dict(hidden_size=1024, num_attention_heads=8,
                                     num_hidden_layers=4, intermediate_size=2816,
                                     num_experts=8, num_experts_per_tok=2)
    fields.update(changes)
    return ModelShape.llama(**fields)


def test_bad_moe_input_names_the_field() -> None:
    with pytest.raises(InputError, match=r"^num_experts_per_tok: 9 exceeds num_experts 8"):
        _moe(num_experts_per_tok=9)
    with pytest.raises(InputError, match=r"^num_experts_per_tok: required"):
        _moe(num_experts_per_tok=None)
    with pytest.raises(InputError, match=r"^num_experts: must be positive"):
        _moe(num_experts=0)
    with pytest.raises(InputError, match=r"^num_dense_layers: 4 leaves no MoE layer"):
        _moe(num_dense_layers=4)
    with pytest.raises(InputError, match=r"^moe_intermediate_size: only a mixture"):
        ModelShape.llama(hidden_size=1024, num_attention_heads=8, num_hidden_layers=4,
                         moe_intermediate_size=512)
    with pytest.raises(InputError, match=r"^shared_expert_gate: needs num_shared_experts"):
        _moe(shared_expert_gate=True)
    with pytest.raises(InputError, match=r"^router: must be one of"):
        _moe(router="argmax")
    with pytest.raises(InputError, match=r"^num_experts: mixture-of-experts ViTs"):
        ModelShape.vit(hidden_size=768, num_attention_heads=12, num_hidden_layers=12,
                       num_experts=8, num_experts_per_tok=2)
    with pytest.raises(InputError, match=r"^qk_rope_head_dim: required"):
        _moe(kv_lora_rank=256, head_dim=192)
    with pytest.raises(InputError, match=r"^v_head_dim: only multi-head latent"):
        _moe(v_head_dim=64)


def test_expert_parallel_size_must_divide_the_experts() -> None:
    shape = shape_of("mixtral-8x7b")
    assert check_ep(shape, 4) == 4
    with pytest.raises(InputError, match=r"^ep: 3 does not divide num_experts 8"):
        check_ep(shape, 3)
    with pytest.raises(InputError, match=r"^ep: 2 needs a mixture-of-experts"):
        check_ep(get_preset("llama-2-7b"), 2)
    with pytest.raises(InputError, match=r"^ep: must be a positive integer"):
        check_ep(shape, 0)


def test_a_dense_model_is_unchanged_by_the_moe_fields() -> None:
    llama = get_preset("llama-2-7b")
    assert not llama.is_moe and llama.moe_layers == 0
    assert count_params(llama, active=True) == count_params(llama) == 6_738_415_616
    assert describe(llama) == ""
    # one expert, top-1, no router cost aside: the MoE path holds the dense MLP plus h·1
    one = llama.replace(num_experts=1, num_experts_per_tok=1)
    assert count_params(one) == count_params(llama) + 32 * 4096


def test_flops_count_the_active_parameters() -> None:
    mixtral = shape_of("mixtral-8x7b")
    # the weight GEMMs run the active weight matrices: all but embeddings, norms
    active_matrices = count_params(mixtral, active=True) - 2 * 32000 * 4096 - 65 * 4096
    assert gemm_macs_per_token(mixtral) == active_matrices
    f = flops_per_token(mixtral, seq_len=4096)
    # 6·N_active (layers) + 6·h·v logits + 3 · causal attention 2·s·h per layer
    expected = 6 * active_matrices + 6 * 4096 * 32000 + 3 * 32 * 2 * 4096 * 4096
    assert f["total"] == expected
    # a dense model keeps its count (module doctest: Llama-2-7B 42.86 GFLOPs at 4096)
    assert round(flops_per_token(get_preset("llama-2-7b"), seq_len=4096)["total"] / 1e9, 2) \
        == 42.86


def test_latent_attention_flops() -> None:
    ds = shape_of("deepseek-v2-lite")
    s = 2048
    f = flops_per_token(ds, seq_len=s)
    # QKᵀ over a·d_qk = 16·192 and AV over a·d_v = 16·128, causal: half of 2·s·(3072 + 2048)
    assert f["attention_forward"] == 27 * s * (16 * 192 + 16 * 128)
    # projections as weight GEMMs: q 2048·3072, kv_a 2048·576, kv_b 512·4096, o 2048·2048
    per_layer_attn = 2048 * 3072 + 2048 * 576 + 512 * 4096 + 2048 * 2048
    assert param_breakdown(ds)["attention"] == 27 * per_layer_attn


def test_tensor_parallel_counts_with_experts() -> None:
    mixtral = shape_of("mixtral-8x7b")
    # router and norms stay whole on every rank, the rest splits
    whole = 32 * (4096 * 8 + 2 * 4096) + 4096
    assert count_params(mixtral, tp=2) == (count_params(mixtral) - whole) // 2 + whole
    with pytest.raises(InputError, match=r"^tp: 3 does not divide"):
        count_params(mixtral, tp=3)


def test_moe_activation_bytes() -> None:
    from shapewise.model.moe import moe_mlp_activation_bytes

    mixtral = shape_of("mixtral-8x7b")
    sb = 4096
    rep, split = moe_mlp_activation_bytes(mixtral, sb=sb, e=2)
    # 2 slots per token, each keeping gate, up and their product of 14336 (bf16)
    assert split == 3 * 2 * (sb * 2) * 14336
    # fp32 router probabilities over 8 experts, permuted inputs and expert outputs (bf16)
    assert rep == 4 * sb * 8 + 2 * 2 * (sb * 2) * 4096
    # a capacity factor keeps the padded slots; imbalance the busiest rank's
    assert moe_mlp_activation_bytes(mixtral, sb=sb, e=2, capacity_factor=1.25)[1] \
        == int(1.25 * split)
    ds = shape_of("deepseek-v2-lite")
    _, split = moe_mlp_activation_bytes(ds, sb=sb, e=2)
    assert split == 3 * 2 * (sb * 6) * 1408 + 3 * 2 * sb * 2816  # routed + shared
