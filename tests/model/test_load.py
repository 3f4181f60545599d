"""load_shape: one reader for every input a user has, and every shape document shapewise
writes (recommend --json, estimate --json, ModelShape.to_dict), with typo hints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shapewise import ModelShape, estimate
from shapewise.errors import InputError
from shapewise.model import hf
from shapewise.model.load import load_shape
from shapewise.model.presets import get_preset
from shapewise.search.recommend import recommend_shape

HF = Path(__file__).parents[1] / "fixtures" / "hf"
FIX = Path(__file__).parents[1] / "check" / "fixtures"


@pytest.fixture(scope="module")
def rec() -> dict:
    r = recommend_shape(params=125e6, gpu="a100", n_trials=12, seq_len=1024, micro_batch=2,
                        arch="llama", vocab_size=32000)
    return json.loads(json.dumps(r.to_dict()))  # exactly what --json prints


def test_every_config_kind(tmp_path: Path) -> None:
    gpt2 = load_shape(HF / "gpt2")
    assert gpt2.source == "hf" and gpt2.shape.vocab_size == 50257
    assert gpt2.path.endswith("config.json") and gpt2.shape.name == "gpt2"
    assert load_shape(HF / "gpt2" / "config.json").shape == gpt2.shape
    assert load_shape(str(HF / "gpt2")).shape == gpt2.shape
    assert load_shape(json.loads((HF / "gpt2" / "config.json").read_text())).source == "hf"
    mega = load_shape(FIX / "megatron" / "gpt3_175b.json")
    assert mega.source == "megatron" and (mega.tp, mega.pipeline_stages) == (8, 16)
    nano = load_shape(FIX / "nanogpt" / "train_gpt2.py")
    assert nano.source == "nanogpt" and nano.micro_batch == 12
    preset = load_shape("llama-2-7b")
    assert preset.source == "preset" and preset.shape == get_preset("llama-2-7b")
    shape = get_preset("mistral-7b")
    assert load_shape(shape).shape is shape
    assert load_shape(shape.to_dict()).shape == shape
    p = tmp_path / "shape.json"
    p.write_text(json.dumps(shape.to_dict()))
    loaded = load_shape(p)
    assert loaded.source == "shape" and loaded.shape == shape and loaded.path == str(p)


def test_recommend_document_whole_best_and_best_shape(rec: dict, tmp_path: Path) -> None:
    best = ModelShape.from_dict(rec["best"]["shape"])
    whole = load_shape(rec)
    assert whole.source == "recommend" and whole.shape == best
    # the settings it was searched at come with it
    assert (whole.seq_len, whole.micro_batch, whole.tp) == (1024, 2, 1)
    assert whole.gpu == rec["gpu"] and whole.dtype == "bf16"
    assert load_shape(rec["best"]).shape == best
    assert load_shape(rec["best"]["shape"]).shape == best
    for i, candidate in enumerate(rec["candidates"]):
        assert load_shape(candidate).shape == ModelShape.from_dict(candidate["shape"]), i
    p = tmp_path / "rec.json"
    p.write_text(json.dumps(rec))
    assert load_shape(p).shape == best and load_shape(str(p)).path == str(p)


def test_estimate_document_carries_its_settings(tmp_path: Path) -> None:
    shape = get_preset("llama-2-7b")
    est = estimate(shape, gpu="a100", micro_batch=4, seq_len=512, tp=2, dtype="fp16")
    p = tmp_path / "est.json"
    p.write_text(json.dumps(est.to_dict()))
    loaded = load_shape(p)
    assert loaded.source == "estimate" and loaded.shape == shape
    assert (loaded.micro_batch, loaded.seq_len, loaded.tp) == (4, 512, 2)
    assert loaded.gpu == est.gpu and loaded.dtype == "fp16"
    # an estimate of a training plan states its pipeline stages in its plan
    planned = {**est.to_dict(), "plan": {"tp": 2, "pp": 4}}
    assert load_shape(planned).pipeline_stages == 4
    with pytest.raises(InputError, match=r"plan\.pp: expected a positive integer"):
        load_shape({**planned, "plan": {"pp": 0}})


def test_documents_with_bad_fields_name_the_key_path(rec: dict) -> None:
    bad = json.loads(json.dumps(rec))
    bad["best"]["shape"]["hidden_size"] = -5
    with pytest.raises(InputError, match=r"best\.shape\.hidden_size: must be positive"):
        load_shape(bad)
    bad = json.loads(json.dumps(rec))
    bad["inputs"]["tp"] = 0
    with pytest.raises(InputError, match=r"inputs\.tp: expected a positive integer"):
        load_shape(bad)
    with pytest.raises(InputError, match=r"shape\.arch: must be one of"):
        load_shape({"shape": {**get_preset("gpt2").to_dict(), "arch": "bert"}})


def test_unknown_inputs_are_refused_with_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a shape shapewise can read"):
        load_shape({"name": "tsconfig", "compilerOptions": {}})
    with pytest.raises(InputError, match=r"not a preset \(did you mean 'llama-2-7b'"):
        load_shape("llama-2-7")
    with pytest.raises(InputError, match="cannot read"):
        load_shape(str(tmp_path / "missing.json"))
    with pytest.raises(InputError, match="expected a path"):
        load_shape(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------ did you mean (#15)
def test_a_mistyped_required_hf_field_says_did_you_mean() -> None:
    cfg = json.loads((HF / "gpt2" / "config.json").read_text())
    cfg["n_heads"] = cfg.pop("n_head")
    with pytest.raises(InputError, match=r"n_head: missing .*'n_heads': did you mean n_head\?"):
        load_shape(cfg)
    llama = json.loads((HF / "llama-2-7b" / "config.json").read_text())
    llama["num_atention_heads"] = llama.pop("num_attention_heads")
    with pytest.raises(InputError, match="did you mean num_attention_heads"):
        hf.from_hf_config(llama)
    # nothing close: no guess
    del llama["num_atention_heads"]
    with pytest.raises(InputError, match=r"num_attention_heads: missing \(the config must "
                                         r"state it\)$"):
        hf.from_hf_config(llama)


def test_a_mistyped_optional_hf_field_is_a_note_not_a_silent_default() -> None:
    cfg = json.loads((HF / "mistral-7b" / "config.json").read_text())
    cfg["num_key_value_head"] = cfg.pop("num_key_value_heads")  # would silently be MHA
    loaded = load_shape(cfg)
    assert loaded.shape.num_key_value_heads == loaded.shape.num_attention_heads
    assert any("num_key_value_head: not a field" in n and "did you mean num_key_value_heads"
               in n for n in loaded.notes), loaded.notes


def test_real_configs_get_no_typo_notes() -> None:
    for folder in sorted(p for p in HF.iterdir() if p.is_dir()):
        assert load_shape(folder).notes == (), folder.name


def test_megatron_nanogpt_and_shape_typos(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'num_layer': did you mean num_layers"):
        load_shape({"num_layer": 24, "hidden_size": 1024, "num_attention_heads": 16,
                    "ffn_hidden_size": 4096, "vocab_size": 50304})
    p = tmp_path / "train.py"
    p.write_text("n_layers = 24\nn_head = 16\nn_embd = 1024\n")
    nano = load_shape(p)
    assert nano.shape.num_hidden_layers == 12  # nanoGPT ignores the typo too ...
    assert any("n_layers: not a setting nanoGPT reads; did you mean n_layer" in n
               for n in nano.notes)  # ... and now says so
    only_typos = tmp_path / "typo.py"
    only_typos.write_text("n_layers = 24\n")
    with pytest.raises(InputError, match="'n_layers': did you mean n_layer"):
        load_shape(only_typos)
    with pytest.raises(InputError, match="hiden_size: not a ModelShape field; did you mean "
                                         "hidden_size"):
        load_shape({"arch": "gpt", "hiden_size": 768, "num_attention_heads": 12,
                    "num_hidden_layers": 12})


# ------------------------------------------------------------------- the MoE seam
def test_register_model_type_adds_a_family() -> None:
    def reader(cfg):  # type: ignore[no-untyped-def]
        return hf._llama_like(cfg, max_positions=4096), {}

    hf.register_model_type("toy_moe", reader)
    try:
        shape = hf.from_hf_config({"model_type": "toy_moe", "hidden_size": 512,
                                   "num_attention_heads": 8, "num_hidden_layers": 2,
                                   "intermediate_size": 1408, "vocab_size": 32000})
        assert shape.arch == "llama" and "toy_moe" in hf.supported_model_types()
        with pytest.raises(ValueError, match="already has a reader"):
            hf.register_model_type("toy_moe", reader)
    finally:
        hf._READERS.pop("toy_moe")
    assert "toy_moe" not in hf.supported_model_types()


# ---------------------------------------------------------------------- fuzzing
_FIELDS = [f.name for f in dataclasses.fields(ModelShape)]
_VALUES = st.one_of(st.integers(min_value=-(2**40), max_value=2**40), st.booleans(), st.none(),
                    st.floats(), st.text(max_size=8), st.sampled_from(["gpt", "llama", "vit"]),
                    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2),
                                                                         st.integers(),
                                                                         max_size=2))
_SHAPES = st.dictionaries(st.sampled_from([*_FIELDS, "typo_field"]), _VALUES, max_size=12)


@settings(max_examples=300, deadline=None)
@given(shape=_SHAPES, wrap=st.sampled_from(["", "shape", "best", "best.shape"]),
       settings_=st.dictionaries(st.sampled_from(["tp", "seq_len", "micro_batch", "gpu"]),
                                 _VALUES, max_size=3))
def test_any_shape_document_loads_or_names_the_problem(shape: dict, wrap: str,
                                                       settings_: dict) -> None:
    doc: dict = {"arch": "gpt", **shape} if "arch" not in shape and wrap == "" else shape
    if wrap == "shape":
        doc = {"shape": doc, **settings_}
    elif wrap == "best":
        doc = {"best": doc, "inputs": settings_}
    elif wrap == "best.shape":
        doc = {"best": {"shape": doc}, "inputs": settings_, "gpu": settings_.get("gpu")}
    try:
        loaded = load_shape(doc)
    except InputError as exc:
        assert str(exc)  # every refusal says what and where
    else:
        assert isinstance(loaded.shape, ModelShape)
