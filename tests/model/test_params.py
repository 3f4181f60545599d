"""Exact parameter counts of public models, each worked out by hand and traced to a source.

Notation: h hidden, L layers, f MLP width, v vocabulary, g KV heads, d head dim.
"Published" figures are what `model.num_parameters()` prints for the Hugging Face model
(quoted in model cards and countless fine-tuning logs) unless said otherwise; every one was
also reproduced with transformers 5.24.0 from the fixture configs (test_hf.py).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shapewise.errors import InputError
from shapewise.model import ModelShape, count_params, get_preset, param_breakdown
from shapewise.model.params import param_tensors


def gpt_layer(h: int, f: int) -> int:
    # ln_1 2h + c_attn (h·3h + 3h) + attn c_proj (h·h + h) + ln_2 2h + c_fc (h·f + f)
    # + mlp c_proj (f·h + h)  =  4h² + 2hf + 9h + f   (f = 4h: 12h² + 13h)
    return 2 * h + (h * 3 * h + 3 * h) + (h * h + h) + 2 * h + (h * f + f) + (f * h + h)


def llama_layer(h: int, f: int, g: int, d: int, qkv_bias: bool = False) -> int:
    # 2 RMSNorms (h each) + q h·h + k, v h·g·d each + o h·h + gate, up, down h·f each
    attn = h * h + 2 * h * g * d + h * h + ((h + 2 * g * d) if qkv_bias else 0)
    return 2 * h + attn + 3 * h * f


# (preset, expected total, hand derivation, source)
PUBLISHED = {
    # GPT-2 small. wte 50257·768 = 38,597,376; wpe 1024·768 = 786,432;
    # 12 layers · (12·768² + 13·768 = 7,087,872) = 85,054,464; ln_f 2·768 = 1,536; tied head 0.
    # Source: co-design.md anchor; GPT2LMHeadModel("gpt2").num_parameters() = 124,439,808;
    # nanoGPT prints "number of parameters: 123.65M" = this minus wpe (its get_num_params drops
    # position embeddings). Counts that include the 12 causal-mask buffers (attn.bias, 1024²
    # each) are 12,582,912 higher, 137,022,720: buffers, not parameters.
    "gpt2": 38_597_376 + 786_432 + 12 * gpt_layer(768, 3072) + 1_536,
    # GPT-2 medium. wte 50257·1024 = 51,463,168; wpe 1024·1024 = 1,048,576;
    # 24 · (12·1024² + 13·1024 = 12,596,224) = 302,309,376; ln_f 2,048.
    # Source: GPT2LMHeadModel("gpt2-medium").num_parameters() = 354,823,168. Its non-embedding
    # part, 302,311,424, is exactly Pythia-410M's published non-embedding count (same h, L).
    "gpt2-medium": 51_463_168 + 1_048_576 + 24 * gpt_layer(1024, 4096) + 2_048,
    # Pythia-160M (GPT-NeoX, config: h=768, L=12, 12 heads, v=50304, f=3072, rotary_pct=0.25,
    # so no position table). embed_in 50304·768 = 38,633,472; 12 · 7,087,872 = 85,054,464
    # (fused query_key_value h·3h + 3h, dense, two LayerNorms, dense_h_to_4h, dense_4h_to_h:
    # the GPT-2 layer); final_layer_norm 1,536; untied embed_out 50304·768 = 38,633,472.
    # Source: 162,322,944 = GPTNeoXForCausalLM("EleutherAI/pythia-160m").num_parameters();
    # EleutherAI/pythia README table: 85,056,000 non-embedding (test below).
    "pythia-160m": 38_633_472 + 12 * gpt_layer(768, 3072) + 1_536 + 38_633_472,
    # Pythia-2.8B: h=2560, L=32, 32 heads, v=50304, f=10240.
    # embed_in = embed_out = 50304·2560 = 128,778,240; 32 · (12·2560² + 13·2560 = 78,676,480)
    # = 2,517,647,360; final norm 5,120.  Source: pythia README, 2,517,652,480 non-embedding;
    # total 2,775,208,960 (num_parameters()).
    "pythia-2.8b": 2 * 128_778_240 + 32 * gpt_layer(2560, 10240) + 5_120,
    # Llama-2-7B: h=4096, L=32, MHA (g=32, d=128), f=11008, v=32000, untied.
    # embed 131,072,000 + lm_head 131,072,000; per layer 4·4096² = 67,108,864 attention
    # + 3·4096·11008 = 135,266,304 MLP + 8,192 norms = 202,383,360, ·32 = 6,476,267,520;
    # final norm 4,096.  Source: co-design.md anchor; LlamaForCausalLM num_parameters() and
    # the Hub's safetensors metadata for meta-llama/Llama-2-7b-hf: 6,738,415,616.
    "llama-2-7b": 2 * 131_072_000 + 32 * llama_layer(4096, 11008, 32, 128) + 4_096,
    # Mistral-7B-v0.1: GQA g=8 (K, V 4096·1024 = 4,194,304 each), f=14336.
    # per layer 2·4096² + 2·4,194,304 = 41,943,040 + 3·4096·14336 = 176,160,768 + 8,192
    # = 218,112,000, ·32 = 6,979,584,000; + 262,144,000 embeddings + 4,096.
    # Source: MistralForCausalLM("mistralai/Mistral-7B-v0.1").num_parameters() = 7,241,732,096.
    "mistral-7b": 2 * 131_072_000 + 32 * llama_layer(4096, 14336, 8, 128) + 4_096,
    # Qwen2-0.5B: h=896, 14 heads (d=64), g=2 (K, V 128 wide), f=4864, v=151936, tied, biases on
    # q/k/v only. q 802,816+896, k and v 114,688+128 each, o 802,816 = 1,836,160; MLP
    # 3·896·4864 = 13,074,432; norms 1,792; layer 14,912,384, ·24 = 357,897,216;
    # embed 151936·896 = 136,134,656 (tied: counted once); final norm 896.
    # Source: Qwen2ForCausalLM("Qwen/Qwen2-0.5B").num_parameters() = 494,032,768 (Qwen2.5-0.5B
    # has the same shape and count).
    "qwen2-0.5b": 136_134_656 + 24 * llama_layer(896, 4864, 2, 64, qkv_bias=True) + 896,
    # TinyLlama-1.1B: h=2048, L=22, 32 heads (d=64), g=4 (K, V 256 wide), f=5632, v=32000.
    # attention 2·2048² + 2·2048·256 = 9,437,184; MLP 3·2048·5632 = 34,603,008; norms 4,096;
    # layer 44,044,288, ·22 = 968,974,336; embed + lm_head 2·65,536,000; final norm 2,048.
    # Source: LlamaForCausalLM("TinyLlama/TinyLlama-1.1B-...").num_parameters() = 1,100,048,384.
    "tinyllama-1.1b": 2 * 65_536_000 + 22 * llama_layer(2048, 5632, 4, 64) + 2_048,
    # ViT-B/16 at 224 with the 1000-class head (google/vit-base-patch16-224,
    # ViTForImageClassification). Patch conv 3·16·16·768 + 768 = 590,592; cls token 768;
    # positions (196 + 1)·768 = 151,296; 12 · 7,087,872 (q, k, v, output dense, MLP, two
    # LayerNorms: the GPT-2 layer) = 85,054,464; final LayerNorm 1,536; classifier
    # 768·1000 + 1000 = 769,000.  Source: num_parameters() of that model, 86,567,656, the same
    # as torchvision's ViT_B_16_Weights.IMAGENET1K_V1 "num_params". ViTModel instead has a
    # pooler (768² + 768 = 590,592) and no classifier: 86,389,248 (test below). We match the
    # classification model, as the published figure does.
    "vit-base-16": 590_592 + 768 + 151_296 + 12 * gpt_layer(768, 3072) + 1_536 + 769_000,
    # ViT-L/16 at 224, 1000 classes (google/vit-large-patch16-224): patch 3·256·1024 + 1024
    # = 787,456; cls 1,024; positions 197·1024 = 201,728; 24 · 12,596,224 = 302,309,376;
    # final LN 2,048; classifier 1,025,000.  Source: torchvision ViT_L_16_Weights.IMAGENET1K_V1
    # "num_params" 304,326,632.
    "vit-large-16": 787_456 + 1_024 + 201_728 + 24 * gpt_layer(1024, 4096) + 2_048 + 1_025_000,
}

PUBLISHED_FIGURES = {
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "pythia-160m": 162_322_944,
    "pythia-2.8b": 2_775_208_960,
    "llama-2-7b": 6_738_415_616,
    "mistral-7b": 7_241_732_096,
    "qwen2-0.5b": 494_032_768,
    "tinyllama-1.1b": 1_100_048_384,
    "vit-base-16": 86_567_656,
    "vit-large-16": 304_326_632,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_hand_count_equals_published_figure(name: str) -> None:
    # the derivation above and the published number agree before the code is involved
    assert PUBLISHED[name] == PUBLISHED_FIGURES[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_FIGURES))
def test_count_params_matches_published(name: str) -> None:
    assert count_params(get_preset(name)) == PUBLISHED_FIGURES[name]


@pytest.mark.parametrize(
    ("name", "non_embedding"),
    [
        # EleutherAI/pythia README, "Engineering details" table (non-embedding params)
        ("pythia-160m", 85_056_000),
        ("pythia-2.8b", 2_517_652_480),
        # the same GPT layer stack as Pythia-410M (h=1024, L=24): its table says 302,311,424
        ("gpt2-medium", 302_311_424),
    ],
)
def test_non_embedding_counts_match_pythia_table(name: str, non_embedding: int) -> None:
    # Pythia's non-embedding count leaves out embed_in *and* the untied embed_out
    assert count_params(get_preset(name), embedding=False) == non_embedding


def test_vit_model_with_pooler_and_no_classifier() -> None:
    # ViTModel(google/vit-base-patch16-224): 86,567,656 - 769,000 classifier + 590,592 pooler
    backbone = get_preset("vit-base-16").replace(num_labels=0, pooler=True)
    assert count_params(backbone) == 86_567_656 - 769_000 + 590_592 == 86_389_248


def test_breakdown_sums_to_total_and_names_the_parts() -> None:
    for name in PUBLISHED_FIGURES:
        shape = get_preset(name)
        parts = param_breakdown(shape)
        assert set(parts) == {"embeddings", "attention", "mlp", "norms", "head"}
        assert sum(parts.values()) == count_params(shape)
    llama = param_breakdown(get_preset("llama-2-7b"))
    assert llama["attention"] == 32 * 4 * 4096**2
    assert llama["mlp"] == 32 * 3 * 4096 * 11008
    assert llama["norms"] == 65 * 4096  # 2 per layer + final, weight only
    assert llama["head"] == llama["embeddings"] == 32000 * 4096
    assert param_breakdown(get_preset("gpt2"))["head"] == 0  # tied


def test_tied_untied_and_positions() -> None:
    gpt2 = get_preset("gpt2")
    untied = gpt2.replace(tie_word_embeddings=False)
    assert count_params(untied) - count_params(gpt2) == 50257 * 768
    rotary = gpt2.replace(position_embedding="rotary")
    assert count_params(gpt2) - count_params(rotary) == 1024 * 768


def test_gqa_shrinks_only_k_and_v() -> None:
    mha = get_preset("llama-2-7b")
    gqa = mha.replace(num_key_value_heads=8)
    # per layer K and V lose (32 - 8) heads of 128 columns each
    assert count_params(mha) - count_params(gqa) == 32 * 2 * 4096 * (32 - 8) * 128


def test_tensor_parallel_rank_holds_sharded_part() -> None:
    shape = get_preset("llama-2-7b")
    full = count_params(shape)
    norms = param_breakdown(shape)["norms"]
    # without biases, everything but the norms is split: (N - norms)/t + norms
    assert count_params(shape, tp=4) == (full - norms) // 4 + norms
    gpt2 = get_preset("gpt2").replace(vocab_size=50304)
    # GPT-2: row-parallel biases (attn c_proj, mlp c_proj), norms and wpe stay whole
    whole = 12 * (768 + 768 + 4 * 768) + 1536 + 1024 * 768
    assert count_params(gpt2, tp=2) == (count_params(gpt2) - whole) // 2 + whole


def test_tensor_parallel_rejects_uneven_splits() -> None:
    with pytest.raises(InputError, match=r"^tp: .*vocab_size 50257.*vocab_size=50304"):
        count_params(get_preset("gpt2"), tp=2)  # 50257 is odd: pad the vocabulary
    with pytest.raises(InputError, match=r"^tp: .*num_key_value_heads"):
        count_params(get_preset("mistral-7b"), tp=16)
    with pytest.raises(InputError, match=r"^tp: "):
        count_params(get_preset("gpt2"), tp=0)


def test_param_tensors_are_listed_once() -> None:
    names = [p.name for p in param_tensors(get_preset("qwen2-0.5b"))]
    assert len(names) == len(set(names))
    assert "layers.*.self_attn.q_proj.bias" in names
    assert "layers.*.self_attn.o_proj.bias" not in names
    assert "lm_head.weight" not in names  # tied


# ------------------------------------------------------------------ properties
@st.composite
def shapes(draw: st.DrawFn) -> ModelShape:
    arch = draw(st.sampled_from(["gpt", "llama", "vit"]))
    heads = draw(st.integers(1, 16))
    kv = draw(st.sampled_from([g for g in range(1, heads + 1) if heads % g == 0]))
    fields = {
        "hidden_size": heads * draw(st.integers(1, 128)),
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "num_hidden_layers": draw(st.integers(1, 48)),
        "intermediate_size": draw(st.integers(1, 8192)),
    }
    if arch != "vit":
        fields["vocab_size"] = draw(st.integers(1, 200_000))
    return ModelShape(arch=arch, **fields)


@given(shapes())
def test_params_strictly_increase_with_layers(shape: ModelShape) -> None:
    deeper = shape.replace(num_hidden_layers=shape.num_hidden_layers + 1)
    assert count_params(deeper) > count_params(shape)


@given(shapes(), st.integers(1, 64))
def test_params_strictly_increase_with_hidden(shape: ModelShape, extra_dims: int) -> None:
    wider = shape.replace(hidden_size=shape.hidden_size + extra_dims * shape.num_attention_heads)
    assert count_params(wider) > count_params(shape)


@given(shapes())
def test_layer_count_is_linear(shape: ModelShape) -> None:
    # N(L) = outside + L · per_layer exactly
    one = count_params(shape.replace(num_hidden_layers=1))
    two = count_params(shape.replace(num_hidden_layers=2))
    n = shape.num_hidden_layers
    assert count_params(shape) == one + (n - 1) * (two - one)
