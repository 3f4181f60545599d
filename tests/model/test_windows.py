"""Sliding-window attention per layer (ModelShape.layer_types): validation, reading it from
Hugging Face configs, and pricing each layer by its kind.

The GPT-OSS-20B config is tests/fixtures/hf_moe/gpt-oss-20b/config.json, transcribed from
the openai/gpt-oss-20b repository on Hugging Face (tests/fixtures/hf_moe/README.md): 24
layers alternating a 128-key window and full attention, window first.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shapewise import ModelShape, estimate, get_gpu
from shapewise.check.rules import run_rules, shape_context
from shapewise.cost.attention import visible_pairs
from shapewise.cost.price import price
from shapewise.errors import InputError
from shapewise.model.flops import attention_forward_flops_all_layers, step_flops
from shapewise.model.hf import from_hf_config
from shapewise.model.load import load_shape
from shapewise.model.memory import plan_memory
from shapewise.model.windows import hf_windows
from shapewise.ops import Attention
from shapewise.plan import Plan, make_setup
from shapewise.step_ops import layer_kinds

REPO = Path(__file__).resolve().parents[2]
OSS = REPO / "tests/fixtures/hf_moe/gpt-oss-20b/config.json"
H100 = get_gpu("h100")
SEQ, WINDOW = 4096, 128


def oss() -> ModelShape:
    return from_hf_config(OSS)


def all_full(shape: ModelShape) -> ModelShape:
    return shape.replace(layer_types=("full_attention",) * shape.num_hidden_layers)


def attention_s(est) -> float:  # type: ignore[no-untyped-def]
    """Seconds per step of the fused attention kernels (every kind, every phase)."""
    return sum(o.total_s for o in est.breakdown if o.kind == "attention")


# ------------------------------------------------------------------------------ reading
def test_gpt_oss_config_round_trips_its_layer_kinds(tmp_path: Path) -> None:
    cfg = json.loads(OSS.read_text())
    shape = oss()
    assert shape.sliding_window == cfg["sliding_window"] == WINDOW
    assert shape.layer_types == tuple(cfg["layer_types"])
    assert shape.window_layers == 12 and shape.num_hidden_layers == 24
    assert [shape.layer_window(i) for i in range(4)] == [WINDOW, None, WINDOW, None]
    # through ModelShape JSON and load_shape, as `shapewise estimate --json` writes it
    path = tmp_path / "shape.json"
    path.write_text(json.dumps(shape.to_dict()))
    again = load_shape(path).shape
    assert again == shape and again.layer_types == shape.layer_types
    # without layer_types, GptOssConfig's default: the same alternation
    default = {k: v for k, v in cfg.items() if k != "layer_types"}
    assert from_hf_config(default).layer_types == shape.layer_types


def test_estimate_json_round_trips_the_layer_kinds(tmp_path: Path) -> None:
    def est(source: Path) -> dict:
        r = subprocess.run([sys.executable, "-m", "shapewise", "estimate", str(source),
                            "--gpu", "h100", "--seq-len", str(SEQ), "--json"],
                           capture_output=True, text=True, timeout=300, check=False)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    first = est(OSS)
    path = tmp_path / "estimate.json"
    path.write_text(json.dumps(first))
    again = est(path)
    assert first["shape"]["layer_types"] == again["shape"]["layer_types"] == list(
        oss().layer_types or ())
    assert again["step_time_s"] == first["step_time_s"]


def test_family_defaults_follow_transformers() -> None:
    # transformers' config classes build these layer_types (WINDOW_DEFAULTS cites them)
    cfg = {"num_hidden_layers": 12}
    g3 = hf_windows(cfg, "gemma3_text")["layer_types"]
    assert [i for i, k in enumerate(g3) if k == "full_attention"] == [5, 11]
    co = hf_windows(cfg, "cohere2")["layer_types"]
    assert [i for i, k in enumerate(co) if k == "full_attention"] == [3, 7, 11]
    assert hf_windows(cfg, "mistral") == {"sliding_window": 4096, "layer_types": None}
    q = hf_windows({**cfg, "max_window_layers": 8}, "qwen2")["layer_types"]
    assert q == ("full_attention",) * 8 + ("sliding_attention",) * 4
    assert hf_windows({**cfg, "sliding_window": None}, "gpt_oss") == {
        "sliding_window": None, "layer_types": None}


def test_qwen2_windows_the_layers_from_max_window_layers() -> None:
    cfg = json.loads((REPO / "tests/fixtures/hf/qwen2-0.5b/config.json").read_text())
    assert from_hf_config(cfg).window_layers == 0  # use_sliding_window: false
    on = from_hf_config({**cfg, "use_sliding_window": True, "max_window_layers": 20,
                         "sliding_window": 1024})
    assert on.sliding_window == 1024 and on.window_layers == 4
    assert [on.layer_window(i) for i in (19, 20)] == [None, 1024]


def test_transformers_builds_the_same_layer_types() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = json.loads(OSS.read_text())
    built = transformers.GptOssConfig(**{k: v for k, v in cfg.items() if k != "layer_types"})
    assert tuple(built.layer_types) == oss().layer_types
    qwen = transformers.Qwen2Config(num_hidden_layers=6, use_sliding_window=True,
                                    max_window_layers=4)
    ours = hf_windows({"num_hidden_layers": 6, "max_window_layers": 4}, "qwen2")
    assert tuple(qwen.layer_types) == ours["layer_types"]


@pytest.mark.parametrize("changes, message", [
    ({"layer_types": ["sliding_attention", "local"] * 12}, r"layer_types: entry 1 is 'local'"),
    ({"layer_types": ["full_attention"] * 23}, r"layer_types: 23 entries for num_hidden_layers"),
    ({"layer_types": "sliding_attention"}, r"layer_types: expected a list"),
    ({"sliding_window": None}, r"layer_types: 'sliding_attention' layers need sliding_window"),
])
def test_bad_layer_types_name_the_field(changes: dict, message: str) -> None:
    cfg = {**json.loads(OSS.read_text()), **changes}
    with pytest.raises(InputError, match=message):
        from_hf_config(cfg)
    fields = {**oss().to_dict(), **changes}
    with pytest.raises(InputError, match=message):
        ModelShape.from_dict(fields)


def test_a_vit_has_no_layer_types() -> None:
    with pytest.raises(InputError, match=r"layer_types: a ViT has none"):
        ModelShape.vit(hidden_size=768, num_attention_heads=12, num_hidden_layers=2,
                       layer_types=("full_attention",) * 2)


def test_bad_layer_types_cli_is_one_line_exit_2(tmp_path: Path) -> None:
    cfg = {**json.loads(OSS.read_text()), "layer_types": ["sliding_attention", "chunked"] * 12}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    r = subprocess.run([sys.executable, "-m", "shapewise", "estimate", str(path), "--gpu",
                        "h100"], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 2, r.stderr
    assert "layer_types: entry 1 is 'chunked'" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_repeating_pattern_follows_a_new_layer_count() -> None:
    deeper = oss().replace(num_hidden_layers=36)  # gpt-oss-120b's depth
    assert deeper.layer_types == ("sliding_attention", "full_attention") * 18
    # Qwen2's windows from layer 4 on repeat nothing: the new count must come with them
    qwen = ModelShape.llama(hidden_size=512, num_attention_heads=8, num_hidden_layers=6,
                            sliding_window=64,
                            layer_types=("full_attention",) * 4 + ("sliding_attention",) * 2)
    with pytest.raises(InputError, match=r"layer_types: 6 entries for num_hidden_layers 8"):
        qwen.replace(num_hidden_layers=8)


# ------------------------------------------------------------------------------ pricing
def test_gpt_oss_attention_is_priced_per_layer_kind() -> None:
    shape, full = oss(), all_full(oss())
    alt = estimate(shape, gpu=H100, seq_len=SEQ)
    ref = estimate(full, gpu=H100, seq_len=SEQ)
    # the ratio the cost model's own window formula gives for one layer of each kind: the
    # same ops the step builds (a/t heads, g/t KV heads, causal), forward and backward
    op = Attention(batch=1, heads=shape.num_attention_heads, seq_len=SEQ,
                   head_dim=shape.head_dim, kv_heads=shape.kv_heads, causal=True)

    def layer(window: int | None) -> float:
        f = dataclasses.replace(op, window=window)
        return price(f, H100) + price(dataclasses.replace(f, backward=True), H100)

    n_w = shape.window_layers
    n_f = shape.num_hidden_layers - n_w
    expected = (n_w * layer(WINDOW) + n_f * layer(None)) / (shape.num_hidden_layers
                                                            * layer(None))
    assert expected < 0.9  # a 128-key window at 4096 tokens is far cheaper than full
    assert attention_s(alt) / attention_s(ref) == pytest.approx(expected, rel=1e-9)
    assert alt.step_time_s < ref.step_time_s
    assert ref.step_time_s - alt.step_time_s == pytest.approx(
        attention_s(ref) - attention_s(alt), rel=1e-6)  # nothing else moved
    # model FLOPs: the window's visible (query, key) pairs, from the same formula
    pairs = visible_pairs(SEQ, SEQ, True, WINDOW) / visible_pairs(SEQ, SEQ, True, None)
    att = attention_forward_flops_all_layers(shape, SEQ)
    assert att / attention_forward_flops_all_layers(full, SEQ) == pytest.approx(
        (n_w * pairs + n_f) / shape.num_hidden_layers, rel=1e-12)
    assert step_flops(shape, micro_batch=1, seq_len=SEQ)["attention_forward"] == att
    # the step's ops count those FLOPs, layer kind by layer kind
    counted = sum(o.flops * o.count for o in alt.breakdown)
    assert counted == pytest.approx(alt.flops_per_step, rel=1e-9)
    assert alt.flops_per_step < ref.flops_per_step


def test_training_memory_does_not_change_with_windows() -> None:
    shape = oss()
    setup = make_setup(shape, gpu=H100, seq_len=SEQ, plan=Plan(dp=8, ep=8, micro_batch=1))
    full = all_full(shape)
    assert plan_memory(shape, setup) == plan_memory(
        full, make_setup(full, gpu=H100, seq_len=SEQ, plan=Plan(dp=8, ep=8, micro_batch=1)))


def test_uniform_windows_price_as_before() -> None:
    # Mistral-style: sliding_window alone windows every layer, as layer_types saying so does
    m = ModelShape.llama(hidden_size=1024, num_attention_heads=8, num_hidden_layers=4,
                         sliding_window=1024)
    stated = m.replace(layer_types=("sliding_attention",) * 4)
    a, b = (estimate(x, gpu=H100, seq_len=SEQ) for x in (m, stated))
    assert a.step_time_s == b.step_time_s and a.flops_per_step == b.flops_per_step
    none = m.replace(sliding_window=None)
    assert estimate(none, gpu=H100, seq_len=SEQ).step_time_s > a.step_time_s


def test_pipeline_stages_hold_their_own_layer_kinds() -> None:
    shape = ModelShape.llama(hidden_size=1024, num_attention_heads=8, num_hidden_layers=8,
                             sliding_window=128,
                             layer_types=("sliding_attention",) * 4 + ("full_attention",) * 4)
    assert layer_kinds(shape, 0, 4) == ((False, True, 4),)
    assert layer_kinds(shape, 4, 8) == ((False, False, 4),)
    assert layer_kinds(oss(), 0, 4) == ((True, True, 2), (True, False, 2))
    # two stages: the last (full attention, and the logits) is the slower one and sets the
    # step, so its attention is what an all-full model's last stage runs; the windowed first
    # stage is not averaged in
    plan = Plan(pp=2, micro_batch=1, global_batch=8)
    est = estimate(shape, gpu=H100, seq_len=SEQ, plan=plan)
    ref = estimate(all_full(shape), gpu=H100, seq_len=SEQ, plan=plan)
    assert attention_s(est) == pytest.approx(attention_s(ref), rel=1e-12)
    counts = [o.count for o in est.breakdown if o.kind == "attention"]
    assert sum(counts) == 2 * 4 * 8  # 4 layers, forward + backward, 8 micro-batches


def test_check_runs_on_gpt_oss() -> None:
    # the head-dim and attention rules read the step's "attention" ops, now of two kinds
    ctx = shape_context(oss(), gpu=H100, seq_len=SEQ, plan=Plan(dp=8, ep=8, micro_batch=1,
                                                                fsdp="full"))
    assert ctx.estimate is not None
    forward = {o.time_s for o in ctx.estimate.breakdown
               if o.kind == "attention" and o.phase == "forward"}
    assert len(forward) == 2  # a windowed and a full attention kernel
    found = run_rules(ctx)  # no rule trips over the mixed layers
    assert all(f.rule_id.startswith("SW") for f in found)


# ----------------------------------------------------------------------------- Megatron
MEGATRON = {"--hidden-size": 2880, "--num-attention-heads": 64, "--num-layers": 24,
            "--vocab-size": 201088, "--swiglu": True, "--group-query-attention": True,
            "--num-query-groups": 8, "--kv-channels": 64}


def test_megatron_window_arguments_read_per_layer() -> None:
    from shapewise.model.megatron import read_megatron

    # gpt-oss in Megatron-LM: --window-size 128,0 --window-attn-skip-freq 2; the mask keeps
    # keys i - 128 .. i, 129 of them
    oss_m = read_megatron({**MEGATRON, "--window-size": "128,0",
                           "--window-attn-skip-freq": 2}).shape
    assert oss_m.sliding_window == 129
    assert oss_m.layer_types == ("sliding_attention", "full_attention") * 12
    every = read_megatron({**MEGATRON, "--window-size": [4096, 0]}).shape
    assert every.window_layers == 24 and every.layer_types is None
    listed = read_megatron({**MEGATRON, "--window-size": "4096,0",
                            "--window-attn-skip-freq": "[1,1,1,0]*6"}).shape
    assert [i for i, k in enumerate(listed.layer_types) if k == "full_attention"] == [
        3, 7, 11, 15, 19, 23]
    assert read_megatron({**MEGATRON, "--window-size": "-1,0"}).shape.window_layers == 0


@pytest.mark.parametrize("extra, message", [
    ({"--window-size": "128,4"}, r"window_size: a right window of 4 keys looks ahead"),
    ({"--window-size": "a,b"}, r"window_size: expected 'left,right' keys"),
    ({"--window-size": "128,0", "--window-attn-skip-freq": "[1,0]*3"},
     r"window_attn_skip_freq: 6 entries for num_layers 24"),
    ({"--window-size": "128,0", "--window-attn-skip-freq": 0},
     r"window_attn_skip_freq: expected a positive integer"),
])
def test_bad_megatron_window_arguments_name_the_field(extra: dict, message: str) -> None:
    from shapewise.model.megatron import read_megatron

    with pytest.raises(InputError, match=message):
        read_megatron({**MEGATRON, **extra})


# -------------------------------------------------------------------------- Gemma 2 / 3
GEMMA = REPO / "tests/fixtures/hf_windows"
GEMMA_COUNTS = {"gemma-2-2b": 2_614_341_888, "gemma-3-1b-pt": 999_885_952}  # README.md


@pytest.mark.parametrize("folder", sorted(GEMMA_COUNTS))
def test_gemma_configs_read_with_their_windows_and_published_counts(folder: str) -> None:
    from shapewise import count_params

    shape = from_hf_config(GEMMA / folder)
    assert count_params(shape) == GEMMA_COUNTS[folder]
    assert shape.sandwich_norm and shape.tie_word_embeddings and shape.head_dim == 256
    full = [i for i, k in enumerate(shape.layer_types or ()) if k == "full_attention"]
    if folder == "gemma-2-2b":  # Gemma2Config: window and full alternating
        assert shape.sliding_window == 4096 and full == list(range(1, 26, 2))
        assert shape.qk_norm == "none"
    else:  # Gemma3TextConfig: sliding_window_pattern 6, every 6th layer full
        assert shape.sliding_window == 512 and full == [5, 11, 17, 23]
        assert shape.qk_norm == "head"


def test_transformers_builds_the_gemma_fixtures_alike() -> None:
    """Independent check where transformers (and torch) are installed: the counts and the
    layer_types its config classes and models build."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from shapewise import count_params

    for folder in sorted(GEMMA_COUNTS):
        config = transformers.AutoConfig.from_pretrained(GEMMA / folder)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
        shape = from_hf_config(GEMMA / folder)
        assert model.num_parameters() == count_params(shape) == GEMMA_COUNTS[folder], folder
        assert tuple(config.layer_types) == shape.layer_types, folder


def test_sandwich_norms_are_priced_and_kept() -> None:
    shape = from_hf_config(GEMMA / "gemma-3-1b-pt")
    plain = shape.replace(sandwich_norm=False)
    setup = make_setup(shape, gpu=H100, seq_len=SEQ, plan=Plan(micro_batch=1))
    mem = plan_memory(shape, setup)["activations"] - plan_memory(plain, setup)["activations"]
    assert mem == shape.num_hidden_layers * 2 * 2 * SEQ * shape.hidden_size  # 2 bf16 inputs
    norms = [o for o in estimate(shape, gpu=H100, seq_len=SEQ).breakdown
             if o.name == "rmsnorm" and o.phase == "forward"]
    assert sum(o.count for o in norms) == 4 * shape.num_hidden_layers


@pytest.mark.parametrize("changes, message", [
    ({"hidden_activation": "relu"}, r"hidden_activation: 'relu' is not modelled for gemma2"),
    ({"use_bidirectional_attention": True}, r"use_bidirectional_attention: true"),
    ({"layer_types": ["sliding_attention"] * 25}, r"layer_types: 25 entries"),
])
def test_bad_gemma_configs_name_the_field(changes: dict, message: str) -> None:
    cfg = {**json.loads((GEMMA / "gemma-2-2b/config.json").read_text()), **changes}
    with pytest.raises(InputError, match=message):
        from_hf_config(cfg)


def test_check_runs_on_gemma_3() -> None:
    shape = from_hf_config(GEMMA / "gemma-3-1b-pt")
    ctx = shape_context(shape, gpu=H100, seq_len=SEQ)
    kinds = {o.time_s for o in ctx.estimate.breakdown  # type: ignore[union-attr]
             if o.kind == "attention" and o.phase == "forward"}
    assert len(kinds) == 2
    assert all(f.rule_id.startswith("SW") for f in run_rules(ctx))


# ------------------------------------------------------------------------------ Cohere 2
COHERE2 = {"model_type": "cohere2", "hidden_size": 1024, "num_attention_heads": 16,
           "num_key_value_heads": 4, "num_hidden_layers": 8, "intermediate_size": 2816,
           "vocab_size": 32000, "sliding_window": 512}  # small, any sizes will do


def test_cohere2_reads_one_shared_norm_and_its_windows() -> None:
    from shapewise import count_params

    shape = from_hf_config(COHERE2)
    assert shape.shared_norm and shape.parallel_residual and shape.norm == "layernorm"
    assert not shape.bias and shape.tie_word_embeddings
    # Cohere2Config: sliding_window_pattern 4, every 4th layer full
    assert [i for i, k in enumerate(shape.layer_types or ()) if k == "full_attention"] == [
        3, 7]
    h, L = shape.hidden_size, shape.num_hidden_layers
    two = shape.replace(shared_norm=False)
    assert count_params(two) - count_params(shape) == L * h  # the norm it does not have
    setup = make_setup(shape, gpu=H100, seq_len=SEQ, plan=Plan(micro_batch=1))
    kept = plan_memory(two, setup)["activations"] - plan_memory(shape, setup)["activations"]
    assert kept == L * 2 * 2 * SEQ * h  # one norm input and one norm output fewer, bf16
    with pytest.raises(InputError, match=r"shared_norm: one norm .* needs parallel_residual"):
        shape.replace(parallel_residual=False)
    with pytest.raises(InputError, match=r"hidden_act: 'gelu' is not modelled for cohere2"):
        from_hf_config({**COHERE2, "hidden_act": "gelu"})


def test_transformers_builds_the_cohere2_config_alike() -> None:
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from shapewise import count_params

    config = transformers.Cohere2Config(**{k: v for k, v in COHERE2.items()
                                           if k != "model_type"}, eos_token_id=1)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    shape = from_hf_config(COHERE2)
    assert model.num_parameters() == count_params(shape)
    assert tuple(config.layer_types) == shape.layer_types
