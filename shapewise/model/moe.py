"""Mixture-of-experts models: their Hugging Face configs, and the checks that EP needs.

One reader per ``model_type``; each maps the config's own field names onto
:class:`~shapewise.model.shape.ModelShape`'s MoE and MLA fields, taking transformers'
config-class default for a field the file leaves out. :mod:`shapewise.model.hf` registers each
of :data:`MOE_READERS` with its ``register_model_type`` (this module does not import hf).

==============  ===============================  =========================================
model_type      models                           what is particular
==============  ===============================  =========================================
mixtral         Mixtral-8x7B, 8x22B              E = num_local_experts of intermediate_size
qwen2_moe       Qwen1.5-MoE-A2.7B, Qwen2-57B     q/k/v biases; one gated shared expert
qwen3_moe       Qwen3-30B-A3B, 235B-A22B         per-head q/k RMSNorm, stated head_dim
deepseek_v2     DeepSeek-V2, V2-Lite             MLA; shared experts; first_k_dense_replace
deepseek_v3     DeepSeek-V3, R1                  as V2, sigmoid router (its correction bias
                                                 is a buffer, not a parameter)
olmoe           OLMoE-1B-7B                      q/k RMSNorm over the whole projection
gpt_oss         gpt-oss-20b, 120b                biases on attention, router and experts;
                                                 one sink logit per head
==============  ===============================  =========================================

Exact counts of the published models, from the configs in ``tests/fixtures/hf_moe`` (the
totals equal what transformers 5.25 builds from each config on the meta device;
``tests/model/test_moe.py`` checks both):

==================  ===============  ===============  =====================================
model               total            active           model card
==================  ===============  ===============  =====================================
Mixtral-8x7B        46,702,792,704   12,879,925,248   46.7B total, 12.9B active
Qwen1.5-MoE-A2.7B   14,315,784,192    2,689,173,504   14.3B total, 2.7B active (2.0B
                                                      non-embedding: ours 2,066,843,648)
DeepSeek-V2-Lite    15,706,484,224    2,661,150,208   15.7B total, 2.4B active
OLMoE-1B-7B          6,919,161,856    1,282,017,280   6.9B total, 1.3B active
gpt-oss-20b         20,914,757,184    4,187,440,704   20.9B total, 3.6B active
Qwen3-30B-A3B       30,532,122,624    3,353,032,704   30.5B total, 3.3B active
DeepSeek-V3        671,026,404,352   37,552,282,624   671B total (+14B next-token module,
                                                      not in the HF model), 37B active
==================  ===============  ===============  =====================================

Active counts include both embedding matrices, as the Mixtral figure does. Some model cards
leave the input table out (a lookup, no arithmetic): gpt-oss-20b's 3.61B is 4,187,440,704 −
201,088·2,880 = 3,608,307,264; DeepSeek-V2-Lite's 2.4B is 2,661,150,208 − 102,400·2,048 =
2,451,435,008; DeepSeek-V3's 37B is 37.55B − 0.93B = 36.6B.

Not modelled (refused with the field named): Qwen-MoE layers that skip experts other than a
leading run (``mlp_only_layers``, ``decoder_sparse_step``), DeepSeek's ``moe_layer_freq`` > 1,
and attention biases with MLA. GPT-OSS's alternating 128-token sliding window is read per
layer (``layer_types``, :mod:`shapewise.model.windows`): its windowed half is priced with the
window, the other half in full.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from shapewise.errors import InputError
from shapewise.model.shape import ModelShape, check_bool, check_int
from shapewise.model.windows import hf_windows

_REQUIRED = object()

MoeReader = Callable[[Mapping[str, Any]], tuple[dict[str, Any], dict[str, str]]]


def _get(cfg: Mapping[str, Any], key: str, default: Any = _REQUIRED) -> Any:
    if key in cfg and cfg[key] is not None:
        return cfg[key]
    if default is _REQUIRED:
        raise InputError(f"{key}: missing (the config must state it)")
    return default


def _flag(cfg: Mapping[str, Any], key: str, default: bool) -> bool:
    return check_bool(key, _get(cfg, key, default))


def _base(cfg: Mapping[str, Any], *, max_positions: int, head_dim: bool = True) -> dict[str, Any]:
    """The llama-family fields every MoE config states the same way."""
    a = _get(cfg, "num_attention_heads")
    return {
        "arch": "llama",
        "hidden_size": _get(cfg, "hidden_size"),
        "num_attention_heads": a,
        "head_dim": _get(cfg, "head_dim", None) if head_dim else None,
        "num_key_value_heads": _get(cfg, "num_key_value_heads", a),
        "num_hidden_layers": _get(cfg, "num_hidden_layers"),
        "intermediate_size": _get(cfg, "intermediate_size"),
        "vocab_size": _get(cfg, "vocab_size"),
        "max_position_embeddings": _get(cfg, "max_position_embeddings", max_positions),
        "tie_word_embeddings": _flag(cfg, "tie_word_embeddings", False),
    }


def _leading_dense(cfg: Mapping[str, Any], model_type: str) -> int:
    """Qwen-MoE's ``mlp_only_layers``/``decoder_sparse_step`` as a leading dense run."""
    step = _get(cfg, "decoder_sparse_step", 1)
    if step != 1:
        raise InputError(f"decoder_sparse_step: {step!r} (MoE on every {step}th layer) is not "
                         f"modelled for {model_type}; only 1")
    only = _get(cfg, "mlp_only_layers", [])
    if not isinstance(only, list) or sorted(only) != list(range(len(only))):
        raise InputError(f"mlp_only_layers: {only!r} is not modelled; only a leading run of "
                         f"dense layers [0, 1, ..., n-1]")
    return len(only)


def _mixtral(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    fields = _base(cfg, max_positions=4096 * 32)
    fields.update(
        # transformers' MixtralConfig: 8 experts, top-2, window null
        num_experts=_get(cfg, "num_local_experts", 8),
        num_experts_per_tok=_get(cfg, "num_experts_per_tok", 2),
        sliding_window=cfg.get("sliding_window"),
    )
    return fields, {"num_experts": "num_local_experts",
                    "moe_intermediate_size": "intermediate_size"}


def _qwen_moe(cfg: Mapping[str, Any], model_type: str) -> dict[str, Any]:
    if _flag(cfg, "use_sliding_window", False):
        raise InputError(f"use_sliding_window: true is not modelled for {model_type}")
    v2 = model_type == "qwen2_moe"
    fields = _base(cfg, max_positions=32768, head_dim=not v2)
    fields.update(
        num_experts=_get(cfg, "num_experts", 60 if v2 else 128),
        num_experts_per_tok=_get(cfg, "num_experts_per_tok", 4 if v2 else 8),
        moe_intermediate_size=_get(cfg, "moe_intermediate_size", 1408 if v2 else 768),
        num_dense_layers=_leading_dense(cfg, model_type),
    )
    return fields


def _qwen2_moe(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    fields = _qwen_moe(cfg, "qwen2_moe")
    shared = _get(cfg, "shared_expert_intermediate_size", 5632)
    fields.update(
        qkv_bias=True,  # Qwen2MoeAttention: q/k/v_proj with biases, o_proj without
        num_shared_experts=1 if shared else 0,
        shared_expert_intermediate_size=shared or None,
        shared_expert_gate=bool(shared),  # a sigmoid(Linear(h, 1)) scales the shared expert
    )
    return fields, {"num_dense_layers": "mlp_only_layers"}


def _qwen3_moe(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    fields = _qwen_moe(cfg, "qwen3_moe")
    attention_bias = _flag(cfg, "attention_bias", False)
    fields.update(bias=attention_bias, qkv_bias=attention_bias, qk_norm="head")
    return fields, {"num_dense_layers": "mlp_only_layers", "bias": "attention_bias"}


def _deepseek(cfg: Mapping[str, Any], v3: bool) -> tuple[dict[str, Any], dict[str, str]]:
    if _flag(cfg, "attention_bias", False):
        raise InputError("attention_bias: true is not modelled with latent attention")
    freq = _get(cfg, "moe_layer_freq", 1)
    if freq != 1:
        raise InputError(f"moe_layer_freq: {freq!r} is not modelled; only 1 (every layer "
                         f"after first_k_dense_replace is MoE)")
    fields = _base(cfg, max_positions=4096 if v3 else 2048, head_dim=False)
    nope, rope = _get(cfg, "qk_nope_head_dim", 128), _get(cfg, "qk_rope_head_dim", 64)
    check_int("qk_nope_head_dim", nope)
    check_int("qk_rope_head_dim", rope)
    shared = _get(cfg, "n_shared_experts", 1 if v3 else 2)
    fields.update(
        head_dim=nope + rope,  # queries and keys: a no-position part and a rotary part
        num_key_value_heads=fields["num_attention_heads"],  # MLA decompresses K, V per head
        num_experts=_get(cfg, "n_routed_experts", 256 if v3 else 64),
        # DeepseekV2Config has no default top-k (None): the config must state it
        num_experts_per_tok=_get(cfg, "num_experts_per_tok", 8) if v3 else _get(
            cfg, "num_experts_per_tok"),
        moe_intermediate_size=_get(cfg, "moe_intermediate_size", 2048 if v3 else 1407),
        num_shared_experts=shared or 0,
        num_dense_layers=_get(cfg, "first_k_dense_replace", 3 if v3 else 0),
        router="sigmoid" if v3 else "softmax",
        kv_lora_rank=_get(cfg, "kv_lora_rank", 512),
        q_lora_rank=_get(cfg, "q_lora_rank", 1536),
        qk_rope_head_dim=rope,
        v_head_dim=_get(cfg, "v_head_dim", 128),
    )
    if "q_lora_rank" in cfg and cfg["q_lora_rank"] is None:  # V2-Lite: one q_proj
        fields["q_lora_rank"] = None
    return fields, {"num_experts": "n_routed_experts", "num_shared_experts": "n_shared_experts",
                    "num_dense_layers": "first_k_dense_replace"}


def _olmoe(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    fields = _base(cfg, max_positions=4096, head_dim=False)
    attention_bias = _flag(cfg, "attention_bias", False)
    fields.update(
        num_experts=_get(cfg, "num_experts", 64),
        num_experts_per_tok=_get(cfg, "num_experts_per_tok", 8),
        bias=attention_bias, qkv_bias=attention_bias,
        qk_norm="full",  # OlmoeAttention: RMSNorm(a·d) on q and RMSNorm(g·d) on k
    )
    return fields, {"bias": "attention_bias"}


def _gpt_oss(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    fields = _base(cfg, max_positions=131072)
    attention_bias = _flag(cfg, "attention_bias", True)
    fields.update(
        head_dim=_get(cfg, "head_dim", 64),
        num_experts=_get(cfg, "num_local_experts", 128),
        num_experts_per_tok=_get(cfg, "num_experts_per_tok", 4),
        bias=attention_bias, qkv_bias=attention_bias,
        mlp_bias=True,  # GptOssExperts: gate_up_proj_bias and down_proj_bias
        router_bias=True,  # GptOssTopKRouter: a bias of E
        attention_sinks=True,
        # layer_types alternate a 128-token window and full attention (GptOssConfig)
        **hf_windows(cfg, "gpt_oss"),
    )
    return fields, {"num_experts": "num_local_experts", "bias": "attention_bias"}


MOE_READERS: dict[str, MoeReader] = {
    "mixtral": _mixtral,
    "qwen2_moe": _qwen2_moe,
    "qwen3_moe": _qwen3_moe,
    "deepseek_v2": lambda cfg: _deepseek(cfg, v3=False),
    "deepseek_v3": lambda cfg: _deepseek(cfg, v3=True),
    "olmoe": _olmoe,
    "gpt_oss": _gpt_oss,
}




# ------------------------------------------------------------------ expert parallelism
def check_ep(shape: ModelShape, ep: int) -> int:
    """``ep`` if it is a positive int that divides the routed experts, else InputError.

    Expert parallelism places E/ep whole experts on each rank (Megatron, DeepSpeed-MoE); a
    dense model takes only ep = 1.
    """
    if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1:
        raise InputError(f"ep: must be a positive integer, got {ep!r}")
    if not shape.is_moe:
        if ep != 1:
            raise InputError(f"ep: {ep} needs a mixture-of-experts model (num_experts is not "
                             f"set)")
        return ep
    if shape.num_experts % ep:  # type: ignore[operator]
        raise InputError(f"ep: {ep} does not divide num_experts {shape.num_experts} (each "
                         f"expert-parallel rank holds whole experts)")
    return ep


def describe(shape: ModelShape) -> str:
    """One line: experts, top-k and widths (empty for a dense model)."""
    if not shape.is_moe:
        return ""
    parts = [f"{shape.num_experts} experts of {shape.moe_intermediate_size}, "
             f"top-{shape.num_experts_per_tok}"]
    if shape.num_shared_experts:
        parts.append(f"{shape.num_shared_experts} shared ({shape.shared_expert_intermediate_size})")
    if shape.num_dense_layers:
        parts.append(f"first {shape.num_dense_layers} layers dense")
    if shape.mla:
        parts.append(f"MLA kv rank {shape.kv_lora_rank}")
    return ", ".join(parts)


# ---------------------------------------------------------------------- activation memory
def moe_mlp_activation_bytes(shape: ModelShape, *, sb: int, e: int, ep: int = 1,
                             capacity_factor: float | None = None,
                             imbalance: float = 1.0) -> tuple[int, int]:
    """(replicated, split) bytes an MoE layer's MLP keeps for its backward, for ``sb`` tokens
    of ``e``-byte activations, in the split of the dense MLP's term (Korthikanti et al.):
    ``split`` is what tensor parallelism divides (each expert's gate/up outputs and their
    product, over the token slots this rank's experts receive, and the shared experts'),
    ``replicated`` what every TP rank keeps (the fp32 router probabilities, the permuted
    expert inputs and the expert outputs the weighted sum reads back)."""
    h, k = shape.hidden_size, shape.num_experts_per_tok
    glu = shape.activation == "swiglu"
    factor = imbalance if capacity_factor is None else capacity_factor
    slots = math.ceil(sb * k * factor)  # type: ignore[operator]  # token slots on this rank
    fe = shape.moe_intermediate_size
    per_ffn = 3 if glu else 2  # gate, up, product | in, out
    split = per_ffn * e * slots * fe  # type: ignore[operator]
    if shape.num_shared_experts:
        split += per_ffn * e * sb * shape.shared_expert_intermediate_size  # type: ignore[operator]
    replicated = 4 * sb * shape.num_experts + 2 * e * slots * h  # type: ignore[operator]
    return replicated, split
