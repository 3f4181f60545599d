from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from shapewise.errors import InputError
from shapewise.model import PRESETS, ModelShape, get_preset


def test_family_defaults() -> None:
    gpt = ModelShape.gpt(hidden_size=768, num_attention_heads=12, num_hidden_layers=12)
    assert (gpt.norm, gpt.activation, gpt.position_embedding) == ("layernorm", "gelu", "learned")
    assert gpt.bias and gpt.qkv_bias and gpt.mlp_bias and gpt.tie_word_embeddings
    assert gpt.intermediate_size == 4 * 768
    assert gpt.vocab_size == 50304  # GPT-2's 50257 padded to a multiple of 64
    assert gpt.num_key_value_heads == 12
    assert gpt.image_size is None and gpt.causal

    llama = ModelShape.llama(hidden_size=4096, num_attention_heads=32, num_hidden_layers=32)
    assert (llama.norm, llama.activation, llama.position_embedding) == (
        "rmsnorm", "swiglu", "rotary")
    assert not (llama.bias or llama.qkv_bias or llama.mlp_bias or llama.tie_word_embeddings)
    assert llama.intermediate_size == 11008  # Meta's rule reproduces Llama-2-7B
    assert ModelShape.llama(hidden_size=2048, num_attention_heads=32,
                            num_hidden_layers=22).intermediate_size == 5632  # TinyLlama

    vit = ModelShape.vit(hidden_size=768, num_attention_heads=12, num_hidden_layers=12)
    assert (vit.image_size, vit.patch_size, vit.num_channels, vit.num_labels) == (224, 16, 3, 1000)
    assert vit.vocab_size is None and vit.max_position_embeddings is None
    assert vit.seq_len == 197 and vit.num_patches == 196 and not vit.causal
    assert vit == get_preset("vit-base-16").replace(name="")


def test_derived_sizes() -> None:
    mistral = get_preset("mistral-7b")
    assert mistral.head_dim == 128 and mistral.kv_heads == 8
    assert get_preset("gpt2").padded_vocab(64) == 50304
    assert get_preset("gpt2").padded_vocab(128) == 50304
    assert get_preset("llama-2-7b").padded_vocab(64) == 32000
    assert get_preset("vit-huge-14").seq_len == 16 * 16 + 1
    assert get_preset("vit-base-16").replace(use_class_token=False).seq_len == 196


def test_qkv_bias_overrides_bias() -> None:
    qwen = get_preset("qwen2-0.5b")
    assert qwen.qkv_bias and not qwen.bias and not qwen.mlp_bias


def test_frozen_slotted_keyword_only() -> None:
    shape = get_preset("gpt2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        shape.hidden_size = 1024  # type: ignore[misc]
    assert not hasattr(shape, "__dict__")
    with pytest.raises(TypeError):
        ModelShape("gpt", 768, 12, 12)  # type: ignore[misc]


def test_replace_revalidates() -> None:
    gpt2 = get_preset("gpt2")
    assert gpt2.replace(num_hidden_layers=24).num_hidden_layers == 24
    with pytest.raises(InputError, match=r"^num_attention_heads: 7 does not divide"):
        gpt2.replace(num_attention_heads=7)
    with pytest.raises(InputError, match=r"^n_layers: not a ModelShape field"):
        gpt2.replace(n_layers=3)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_dict_round_trip(name: str) -> None:
    shape = get_preset(name)
    data = json.loads(json.dumps(shape.to_dict()))
    assert ModelShape.from_dict(data) == shape


def test_from_dict_errors_name_the_key() -> None:
    data = get_preset("gpt2").to_dict()
    with pytest.raises(InputError, match=r"^n_embd: not a ModelShape field"):
        ModelShape.from_dict({**data, "n_embd": 768})
    del data["hidden_size"]
    with pytest.raises(InputError, match=r"^hidden_size: missing"):
        ModelShape.from_dict(data)
    with pytest.raises(InputError, match=r"^shape: "):
        ModelShape.from_dict([1, 2])  # type: ignore[arg-type]


BASE = {"hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12}


@pytest.mark.parametrize(
    ("arch", "changes", "field"),
    [
        ("gpt", {"hidden_size": 0}, "hidden_size"),
        ("gpt", {"hidden_size": -768}, "hidden_size"),
        ("gpt", {"hidden_size": 768.0}, "hidden_size"),
        ("gpt", {"hidden_size": "768"}, "hidden_size"),
        ("gpt", {"num_hidden_layers": True}, "num_hidden_layers"),
        ("gpt", {"num_attention_heads": 5}, "num_attention_heads"),  # 5 does not divide 768
        ("llama", {"num_key_value_heads": 5}, "num_key_value_heads"),  # 5 does not divide 12
        ("llama", {"num_key_value_heads": 0}, "num_key_value_heads"),
        ("gpt", {"intermediate_size": 0}, "intermediate_size"),
        ("gpt", {"vocab_size": 0}, "vocab_size"),
        ("gpt", {"max_position_embeddings": 0}, "max_position_embeddings"),
        ("gpt", {"norm": "batchnorm"}, "norm"),
        ("gpt", {"activation": "relu"}, "activation"),
        ("gpt", {"position_embedding": "alibi"}, "position_embedding"),
        ("gpt", {"bias": 1}, "bias"),
        ("gpt", {"tie_word_embeddings": "yes"}, "tie_word_embeddings"),
        ("gpt", {"rotary_pct": 0}, "rotary_pct"),
        ("gpt", {"rotary_pct": 1.5}, "rotary_pct"),
        ("gpt", {"sliding_window": 0}, "sliding_window"),
        ("gpt", {"image_size": 224}, "image_size"),  # a text model has no image
        ("gpt", {"name": 3}, "name"),
        ("vit", {"vocab_size": 1000}, "vocab_size"),  # a ViT has no vocabulary
        ("vit", {"tie_word_embeddings": True}, "tie_word_embeddings"),
        ("vit", {"patch_size": 15}, "patch_size"),  # 15 does not divide 224
        ("vit", {"num_labels": -1}, "num_labels"),
        ("vit", {"num_channels": 0}, "num_channels"),
        ("transformer", {}, "arch"),
        # past any model that trains (shapewise.model.shape.LIMITS)
        ("gpt", {"hidden_size": 2**21 * 12}, "hidden_size"),
        ("gpt", {"num_hidden_layers": 2**17 + 1}, "num_hidden_layers"),
        ("gpt", {"intermediate_size": 2**24 + 1}, "intermediate_size"),
        ("gpt", {"vocab_size": 2**28 + 1}, "vocab_size"),
        ("vit", {"image_size": 2**13 * 16, "patch_size": 1}, "image_size"),
    ],
)
def test_bad_fields_are_named(arch: str, changes: dict, field: str) -> None:
    with pytest.raises(InputError, match=rf"^{field}: "):
        ModelShape(arch=arch, **{**BASE, **changes})  # type: ignore[arg-type]


def test_seq_len_is_for_vit_only() -> None:
    with pytest.raises(InputError, match=r"^seq_len: "):
        _ = get_preset("gpt2").seq_len
    with pytest.raises(InputError, match=r"^vocab_size: "):
        get_preset("vit-base-16").padded_vocab(64)


def test_get_preset_errors_list_names() -> None:
    assert get_preset(" GPT2 ") is PRESETS["gpt2"]
    with pytest.raises(InputError, match=r"^preset: unknown model 'gpt3'.*did you mean 'gpt2'"):
        get_preset("gpt3")


def test_model_package_never_imports_torch() -> None:
    # the cost model is pure arithmetic: it must run where torch is not installed
    code = ("import sys, shapewise.model as m; m.memory_per_gpu(m.get_preset('gpt2'), "
            "micro_batch=1, seq_len=8); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_coupled_head_dim_follows_and_a_stated_one_stays() -> None:
    coupled = ModelShape.gpt(**BASE)
    assert coupled.head_dim == 64 and not coupled.decoupled_head_dim
    assert coupled.replace(hidden_size=1024, num_attention_heads=16,
                           num_key_value_heads=16).head_dim == 64
    assert coupled.replace(num_attention_heads=6, num_key_value_heads=6).head_dim == 128
    stated = ModelShape.llama(hidden_size=5120, num_attention_heads=32, num_hidden_layers=2,
                              head_dim=128)
    assert stated.q_size == 4096 and stated.decoupled_head_dim
    assert stated.replace(hidden_size=6144).head_dim == 128
    assert stated.replace(head_dim=None).head_dim == 160
    assert ModelShape.from_dict(stated.to_dict()) == stated
    with pytest.raises(InputError, match=r"^head_dim: must be positive"):
        ModelShape.llama(hidden_size=5120, num_attention_heads=32, num_hidden_layers=2,
                         head_dim=0)
    # a stated head dim lifts the rule that a divides h
    assert ModelShape.llama(hidden_size=5000, num_attention_heads=32, num_hidden_layers=2,
                            head_dim=128).q_size == 4096
