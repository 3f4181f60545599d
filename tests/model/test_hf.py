from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shapewise.errors import InputError
from shapewise.model import count_params, from_hf_config, get_preset

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"

# fixture folder -> (preset, published parameter count; sources in test_params.py)
FIXTURE_MODELS = {
    "gpt2": ("gpt2", 124_439_808),
    "gpt2-medium": ("gpt2-medium", 354_823_168),
    "pythia-160m": ("pythia-160m", 162_322_944),
    "pythia-2.8b": ("pythia-2.8b", 2_775_208_960),
    "llama-2-7b": ("llama-2-7b", 6_738_415_616),
    "mistral-7b": ("mistral-7b", 7_241_732_096),
    "qwen2-0.5b": ("qwen2-0.5b", 494_032_768),
    "tinyllama": ("tinyllama-1.1b", 1_100_048_384),
    "vit-base-patch16-224": ("vit-base-16", 86_567_656),
}


def load(folder: str) -> dict:
    return json.loads((FIXTURES / folder / "config.json").read_text())


def test_every_fixture_is_covered() -> None:
    assert {p.name for p in FIXTURES.iterdir() if p.is_dir()} == set(FIXTURE_MODELS)


@pytest.mark.parametrize("folder", sorted(FIXTURE_MODELS))
def test_fixture_parses_to_its_preset_and_published_count(folder: str) -> None:
    preset, published = FIXTURE_MODELS[folder]
    shape = from_hf_config(FIXTURES / folder / "config.json")
    assert shape.replace(name="") == get_preset(preset).replace(name="")
    assert count_params(shape) == published
    # a dict, a str path and the model folder give the same shape
    assert from_hf_config(load(folder)).replace(name="") == shape.replace(name="")
    assert from_hf_config(str(FIXTURES / folder)) == shape


def test_fields_that_need_reading() -> None:
    gpt2 = from_hf_config(FIXTURES / "gpt2" / "config.json")
    assert gpt2.name == "gpt2"  # folder name when the file has no _name_or_path
    assert gpt2.intermediate_size == 3072  # n_inner: null -> 4 * n_embd
    assert gpt2.tie_word_embeddings and gpt2.position_embedding == "learned"
    llama = from_hf_config(FIXTURES / "llama-2-7b")
    assert llama.name == "meta-llama/Llama-2-7b-hf"
    pythia = from_hf_config(FIXTURES / "pythia-160m")
    assert pythia.arch == "gpt" and pythia.position_embedding == "rotary"
    assert pythia.rotary_pct == 0.25 and pythia.parallel_residual
    assert not pythia.tie_word_embeddings
    assert from_hf_config(FIXTURES / "mistral-7b").sliding_window == 4096
    # a missing window takes transformers' MistralConfig default; null is full attention
    mistral = {k: v for k, v in load("mistral-7b").items() if k != "sliding_window"}
    assert from_hf_config(mistral).sliding_window == 4096
    assert from_hf_config({**mistral, "sliding_window": None}).sliding_window is None
    qwen = from_hf_config(FIXTURES / "qwen2-0.5b")
    assert qwen.qkv_bias and not qwen.bias and qwen.tie_word_embeddings
    assert qwen.sliding_window is None  # use_sliding_window: false
    vit = from_hf_config(FIXTURES / "vit-base-patch16-224")
    assert vit.num_labels == 1000  # len(id2label), as transformers derives it
    assert not vit.pooler and vit.seq_len == 197


def test_vit_backbone_and_label_defaults() -> None:
    cfg = load("vit-base-patch16-224")
    backbone = from_hf_config({**cfg, "architectures": ["ViTModel"]})
    assert backbone.pooler and backbone.num_labels == 0
    assert count_params(backbone) == 86_389_248  # ViTModel(config).num_parameters()
    del cfg["id2label"], cfg["label2id"]
    assert from_hf_config(cfg).num_labels == 2  # PretrainedConfig's default
    assert from_hf_config({**cfg, "num_labels": 10}).num_labels == 10


def test_missing_optional_fields_take_transformers_defaults() -> None:
    minimal = {"model_type": "llama", "hidden_size": 256, "num_attention_heads": 8,
               "num_hidden_layers": 2, "intermediate_size": 688, "vocab_size": 1000}
    shape = from_hf_config(minimal)
    assert shape.num_key_value_heads == 8  # absent: MHA
    assert not shape.tie_word_embeddings and shape.max_position_embeddings == 2048
    biased = from_hf_config({**minimal, "attention_bias": True})
    assert biased.qkv_bias and biased.bias and not biased.mlp_bias
    # q, k, v, o biases: 4 · 256 per layer
    assert count_params(biased) - count_params(shape) == 2 * 4 * 256


def test_unsupported_model_type_lists_supported() -> None:
    with pytest.raises(InputError, match=r"^model_type: 'bert' is not supported; "
                                         r"supported: gpt2, gpt_neox, llama, mistral, qwen2, vit"):
        from_hf_config({"model_type": "bert"})
    with pytest.raises(InputError, match=r"^model_type: None"):
        from_hf_config({"hidden_size": 768})


@pytest.mark.parametrize(
    ("folder", "changes", "message"),
    [
        # GPT-2 configs spell the sizes n_embd / n_head / n_layer: errors say so
        ("gpt2", {"n_head": 5}, r"n_head: 5 does not divide n_embd 768"),
        ("gpt2", {"n_embd": 0}, r"n_embd: must be positive"),
        ("gpt2", {"n_layer": "12"}, r"n_layer: expected an integer"),
        ("gpt2", {"n_inner": 3072.5}, r"n_inner: expected an integer"),
        ("gpt2", {"vocab_size": None}, r"vocab_size: missing"),
        ("llama-2-7b", {"num_attention_heads": 33}, r"num_attention_heads: 33 does not divide"),
        ("mistral-7b", {"num_key_value_heads": 3}, r"num_key_value_heads: 3 does not divide"),
        ("mistral-7b", {"num_key_value_heads": -8}, r"num_key_value_heads: must be positive"),
        ("mistral-7b", {"sliding_window": 0}, r"sliding_window: must be positive"),
        ("llama-2-7b", {"hidden_size": 4096.0}, r"hidden_size: expected an integer"),
        ("llama-2-7b", {"tie_word_embeddings": "false"}, r"tie_word_embeddings: expected true"),
        ("llama-2-7b", {"head_dim": 0}, r"head_dim: must be positive"),
        ("llama-2-7b", {"attention_bias": 1}, r"attention_bias: expected true"),
        ("pythia-160m", {"rotary_pct": 0}, r"rotary_pct: must be a number in \(0, 1\]"),
        ("pythia-160m", {"use_parallel_residual": None}, None),  # null: the default, fine
        ("pythia-160m", {"attention_bias": False}, r"attention_bias: false is not modelled"),
        ("qwen2-0.5b", {"use_sliding_window": True}, None),  # windows from max_window_layers
        ("qwen2-0.5b", {"use_sliding_window": True, "layer_types": ["sliding"] * 24},
         r"layer_types: entry 0 is 'sliding'"),
        ("mistral-7b", {"layer_types": ["full_attention"] * 31},
         r"layer_types: 31 entries for num_hidden_layers 32"),
        ("mistral-7b", {"sliding_window": None, "layer_types": ["sliding_attention"] * 32},
         r"layer_types: 'sliding_attention' layers need sliding_window"),
        ("vit-base-patch16-224", {"patch_size": 15}, r"patch_size: 15 does not divide"),
        ("vit-base-patch16-224", {"id2label": [1, 2]}, r"id2label: expected an object"),
        ("vit-base-patch16-224", {"architectures": ["ViTForMaskedImageModeling"]},
         r"architectures: 'ViTForMaskedImageModeling' is not modelled"),
    ],
)
def test_bad_values_name_the_config_field(folder: str, changes: dict,
                                          message: str | None) -> None:
    cfg = {**load(folder), **changes}
    if message is None:
        from_hf_config(cfg)
        return
    with pytest.raises(InputError, match="^" + message):
        from_hf_config(cfg)


def test_file_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "config.json"
    with pytest.raises(InputError, match=rf"^{re.escape(str(missing))}: cannot read"):
        from_hf_config(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=rf"^{re.escape(str(bad))}: invalid JSON"):
        from_hf_config(bad)
    nan = tmp_path / "nan.json"
    nan.write_text('{"model_type": "gpt2", "n_embd": NaN}')
    with pytest.raises(InputError, match=rf"^{re.escape(str(nan))}: invalid JSON"):
        from_hf_config(nan)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(InputError,
                       match=rf"^{re.escape(str(listing))}: config: expected a JSON object"):
        from_hf_config(listing)
    wrong = tmp_path / "config.json"
    wrong.write_text(json.dumps({**load("gpt2"), "n_head": 5}))
    with pytest.raises(InputError, match=rf"^{re.escape(str(wrong))}: n_head: 5 does not divide"):
        from_hf_config(tmp_path)
    with pytest.raises(InputError, match=r"^config: expected a path or a dict"):
        from_hf_config(42)  # type: ignore[arg-type]


def test_fixture_counts_match_transformers() -> None:
    """Independent check: transformers builds each fixture; its count must equal ours.

    Runs only where transformers (and torch) are installed; shapewise never needs them.
    """
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    for folder in sorted(FIXTURE_MODELS):
        config = transformers.AutoConfig.from_pretrained(FIXTURES / folder)
        with torch.device("meta"):  # shapes only, no memory for the weights
            if config.model_type == "vit":
                model = transformers.ViTForImageClassification(config)
            else:
                model = transformers.AutoModelForCausalLM.from_config(config)
        ours = count_params(from_hf_config(FIXTURES / folder))
        assert model.num_parameters() == ours == FIXTURE_MODELS[folder][1], folder


def test_a_decoupled_head_dim_is_modelled() -> None:
    # mistralai/Mistral-NeMo-Base-2407: hidden 5120 but 32 heads of 128 (a·d = 4096).
    # Source: MistralForCausalLM(MistralConfig(<these fields>)) on the meta device,
    # transformers 5.24: sum of numel = 12,247,782,400.
    cfg = {"model_type": "mistral", "hidden_size": 5120, "num_attention_heads": 32,
           "num_key_value_heads": 8, "head_dim": 128, "num_hidden_layers": 40,
           "intermediate_size": 14336, "vocab_size": 131072,
           "max_position_embeddings": 1024000, "sliding_window": None,
           "tie_word_embeddings": False}
    nemo = from_hf_config(cfg)
    assert nemo.head_dim == 128 and nemo.q_size == 4096 and nemo.decoupled_head_dim
    assert count_params(nemo) == 12_247_782_400
    # a head dim equal to h / a is the ordinary case
    llama = from_hf_config({**load("llama-2-7b"), "head_dim": 128})
    assert not llama.decoupled_head_dim and count_params(llama) == 6_738_415_616
