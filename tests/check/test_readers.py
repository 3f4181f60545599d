"""Config readers: Hugging Face, Megatron-LM arguments, nanoGPT files (parsed, never run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shapewise.check.readers import (
    NANOGPT_VOCAB,
    parse_assignments,
    read_config,
    read_megatron,
    read_nanogpt,
)
from shapewise.errors import InputError

HF = Path(__file__).parents[1] / "fixtures" / "hf"
FIX = Path(__file__).parent / "fixtures"


# ------------------------------------------------------------------------- detection
def test_hf_config_by_path_folder_and_dict() -> None:
    a = read_config(HF / "gpt2" / "config.json")
    b = read_config(HF / "gpt2")
    c = read_config(json.loads((HF / "gpt2" / "config.json").read_text()))
    assert a.source == b.source == c.source == "hf"
    assert a.shape.vocab_size == b.shape.vocab_size == c.shape.vocab_size == 50257
    assert a.tp is None and a.micro_batch is None  # an HF config states no run settings


def test_json_that_is_neither_kind_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text('{"name": "tsconfig", "compilerOptions": {}}')
    with pytest.raises(InputError, match="neither a Hugging Face config"):
        read_config(p)
    p.write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a JSON object"):
        read_config(p)
    (tmp_path / "model.yaml").write_text("a: 1")
    with pytest.raises(InputError, match=r"not a \.json"):
        read_config(tmp_path / "model.yaml")


# -------------------------------------------------------------------------- Megatron
def test_megatron_gpt3_175b_fixture() -> None:
    cfg = read_config(FIX / "megatron" / "gpt3_175b.json")
    s = cfg.shape
    assert cfg.source == "megatron"
    assert (s.hidden_size, s.num_attention_heads, s.num_hidden_layers) == (12288, 96, 96)
    assert s.ffn_size == 4 * 12288 and s.arch == "gpt" and s.position_embedding == "learned"
    assert (cfg.tp, cfg.pipeline_stages, cfg.micro_batch, cfg.seq_len) == (8, 16, 1, 2048)
    # Megatron pads the 50257-token GPT-2 vocabulary to a multiple of 128 × tp 8 = 1024
    assert s.vocab_size == 51200
    assert any("padded to 51200" in n for n in cfg.notes)


def test_megatron_swiglu_defaults_follow_megatron() -> None:
    cfg = read_megatron({"num_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
                         "swiglu": True, "normalization": "RMSNorm",
                         "position_embedding_type": "rope", "group_query_attention": True,
                         "num_query_groups": 8, "padded_vocab_size": 32000,
                         "untie_embeddings_and_output_weights": True,
                         "disable_bias_linear": True})
    s = cfg.shape
    assert s.ffn_size == int((4 * 4096 * 2 / 3) / 64) * 64 == 10880
    assert (s.activation, s.norm, s.position_embedding) == ("swiglu", "rmsnorm", "rotary")
    assert s.kv_heads == 8 and s.vocab_size == 32000 and not s.tie_word_embeddings
    assert not s.bias and cfg.tp is None


@pytest.mark.parametrize(("args", "match"), [
    ({"num_layers": 2, "hidden_size": 64}, "num_attention_heads: missing"),
    ({"num_layers": 2, "hidden_size": 64, "num_attention_heads": 4}, "vocab_size: missing"),
    ({"num_layers": 2, "hidden_size": 64, "num_attention_heads": 3, "vocab_size": 8},
     "does not divide"),
    ({"num_layers": -2, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 8},
     "num_layers: expected a positive integer"),
    ({"num_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 8,
      "normalization": "BatchNorm"}, "normalization"),
    ({"num_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 8,
      "kv_channels": 0}, "kv_channels"),
    ({"num_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 8,
      "group_query_attention": True, "num_query_groups": 3}, "num_query_groups"),
])
def test_megatron_errors_name_megatrons_field(args: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        read_megatron(args)


# --------------------------------------------------------------------------- nanoGPT
def test_nanogpt_train_gpt2_takes_train_py_defaults() -> None:
    cfg = read_nanogpt(FIX / "nanogpt" / "train_gpt2.py")
    s = cfg.shape
    assert (s.hidden_size, s.num_attention_heads, s.num_hidden_layers) == (768, 12, 12)
    assert s.vocab_size == NANOGPT_VOCAB == 50304 and not s.bias
    assert (cfg.micro_batch, cfg.seq_len) == (12, 1024)
    assert any("50304" in n for n in cfg.notes)


def test_nanogpt_baby_gpt() -> None:
    cfg = read_config(FIX / "nanogpt" / "train_shakespeare_char.py")
    s = cfg.shape
    assert (s.hidden_size, s.num_attention_heads, s.num_hidden_layers) == (384, 6, 6)
    assert (cfg.micro_batch, cfg.seq_len, s.max_position_embeddings) == (64, 256, 256)


def test_nanogpt_file_with_code_is_refused_naming_the_line_and_never_run(
        tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"finetune_shakespeare\.py:1: .*found an import"):
        read_config(FIX / "nanogpt" / "finetune_shakespeare.py")
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"n_layer = 2\nx = open({str(marker)!r}, 'w').write('x')\n")
    with pytest.raises(InputError, match=r"evil\.py:2: .*found a call"):
        read_config(evil)
    assert not marker.exists()


def test_nanogpt_init_from_pretrained_gpt2(tmp_path: Path) -> None:
    p = tmp_path / "ft.py"
    p.write_text("init_from = 'gpt2-xl'\nbatch_size = 1\nblock_size = 512\n")
    cfg = read_nanogpt(p)
    s = cfg.shape
    assert (s.hidden_size, s.num_attention_heads, s.num_hidden_layers) == (1600, 25, 48)
    assert s.vocab_size == 50257 and s.bias and cfg.seq_len == 512


@pytest.mark.parametrize(("text", "match"), [
    ("n_layer = 2\nif True:\n    n_head = 3\n", ":2: .*found an if"),
    ("n_layer = foo\n", ":1: .*found a name"),
    ("n_layer = [i for i in range(3)]\n", ":1: .*ListComp"),
    ("a.b = 3\n", ":1: assign to a plain name"),
    ("n_layer = 2 ** 10000\n", "too large"),
    ("n_layer = 1 / 0\n", "division by zero"),
    ("n_layer = (\n", "invalid Python syntax"),
    ("n_layer += 1\n", "augmented assignment"),
    ("n_embd = 768\nn_head = 7\n", "n_head: 7 does not divide n_embd 768"),
    ("n_embd = 76.8\n", "n_embd: expected an integer"),
    ("dropout = 0.1\n", "no nanoGPT model settings"),
    ("batch_size = 0\n", "batch_size"),
])
def test_nanogpt_rejections(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "cfg.py"
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        read_nanogpt(p)


def test_parse_assignments_reads_literals_only() -> None:
    values = parse_assignments('"""doc"""\na = b = 5 * 8\nc: int = -3\nd = (1, [2.5, "x"])\n'
                               "e = {'k': None}\nf = 'a' + 'b'\npass\n")
    assert values == {"a": 40, "b": 40, "c": -3, "d": (1, [2.5, "x"]), "e": {"k": None},
                      "f": "ab"}


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_config(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_bytes(b"n_layer = '\xff'\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_config(bad)
    broken = tmp_path / "config.json"
    broken.write_text('{"model_type": "gpt2", ')
    with pytest.raises(InputError, match="invalid JSON"):
        read_config(broken)


def test_megatron_kv_channels_is_the_head_dim() -> None:
    cfg = read_megatron({"num_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                         "vocab_size": 128, "kv_channels": 32})
    assert cfg.shape.head_dim == 32 and cfg.shape.q_size == 128
