"""ModelShape: the sizes and structural choices of one transformer, nothing else.

Field names follow Hugging Face configs (``hidden_size``, ``num_attention_heads``, ...), so a
reader who knows a ``config.json`` knows this class. Three families:

* ``"gpt"``: GPT-2 / GPT-NeoX. LayerNorm, GELU MLP of ``intermediate_size`` (default 4h),
  biases everywhere, learned positions (GPT-2) or rotary (NeoX: ``position_embedding="rotary"``,
  ``rotary_pct=0.25``, untied ``embed_out``, ``parallel_residual``). Causal.
* ``"llama"``: Llama / Mistral / Qwen2 / TinyLlama. RMSNorm, SwiGLU (three h×f matrices), no
  biases (Qwen2: ``qkv_bias=True``), untied output layer, rotary positions. Causal.
* ``"vit"``: ViT encoder. Patch embedding, class token, learned positions, LayerNorm, GELU,
  a ``num_labels`` classifier instead of a vocabulary. Not causal.

A text model becomes a mixture of experts when ``num_experts`` is set (Mixtral, Qwen-MoE,
DeepSeek-V2/V3, OLMoE, GPT-OSS): each MoE layer's MLP is replaced by a router (an h×E linear)
and E experts of ``moe_intermediate_size``, of which each token visits ``num_experts_per_tok``,
plus optional shared experts that every token visits; the first ``num_dense_layers`` layers
keep a dense MLP of ``intermediate_size``. ``kv_lora_rank`` turns the attention into
DeepSeek's multi-head latent attention (MLA). See :mod:`shapewise.model.moe`.

A field left as ``None`` takes its family's default from :data:`ARCH_DEFAULTS` (one table,
each value with its reason); after construction no default field is ``None`` except the
ones that do not apply to the family (``vocab_size`` of a ViT, ``image_size`` of a text
model, ...). Shapes are frozen; :meth:`ModelShape.replace` returns a re-validated copy.

>>> s = ModelShape.llama(hidden_size=4096, num_attention_heads=32, num_hidden_layers=32)
>>> s.intermediate_size, s.head_dim, s.norm
(11008, 128, 'rmsnorm')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shapewise.errors import InputError
from shapewise.model.run_defaults import (  # noqa: F401 (re-exported: the one rule)
    DEFAULT_MICRO_BATCH,
    DEFAULT_SEQ_LEN,
    default_micro_batch,
    default_seq_len,
)
from shapewise.model.validate import LIMITS, check_bool, check_int, check_limit, choice
from shapewise.model.windows import (  # noqa: F401 (LAYER_TYPES re-exported)
    LAYER_TYPES,
    check_layer_types,
    retile,
)

Arch = Literal["gpt", "llama", "vit"]
PositionEmbedding = Literal["learned", "rotary", "none"]
Norm = Literal["layernorm", "rmsnorm"]
Activation = Literal["gelu", "swiglu"]
Router = Literal["softmax", "sigmoid"]
QkNorm = Literal["none", "head", "full"]
LayerType = Literal["sliding_attention", "full_attention"]

ARCHES: tuple[str, ...] = ("gpt", "llama", "vit")
_POSITION_EMBEDDINGS = ("learned", "rotary", "none")
_NORMS = ("layernorm", "rmsnorm")
_ACTIVATIONS = ("gelu", "swiglu")
_ROUTERS = ("softmax", "sigmoid")
_QK_NORMS = ("none", "head", "full")

#: Fields that only a ViT has; a text model leaves them ``None``.
VIT_FIELDS = ("image_size", "patch_size", "num_channels", "num_labels", "use_class_token", "pooler")
#: Fields that only a text model has; a ViT leaves them ``None``.
TEXT_FIELDS = ("vocab_size", "max_position_embeddings", "sliding_window", "layer_types")
#: Fields that only a mixture-of-experts model has (a dense model leaves them unset).
MOE_FIELDS = ("num_experts_per_tok", "moe_intermediate_size", "num_shared_experts",
              "shared_expert_intermediate_size", "shared_expert_gate", "num_dense_layers",
              "router", "router_bias")
#: Fields of DeepSeek's multi-head latent attention (set together with kv_lora_rank).
MLA_FIELDS = ("q_lora_rank", "qk_rope_head_dim", "v_head_dim")

#: Per-family defaults for fields left as ``None``.
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpt": {
        # GPT-2's BPE has 50257 tokens; padded up to a multiple of 64 for tensor-core-aligned
        # logits GEMMs (nanoGPT: ~25% faster; Pythia ships 50304 for the same reason).
        "vocab_size": 50304,
        "max_position_embeddings": 1024,  # GPT-2's context
        "tie_word_embeddings": True,  # GPT-2 ties wte and lm_head
        "position_embedding": "learned",
        "bias": True,
        "norm": "layernorm",
        "activation": "gelu",
        "parallel_residual": False,
    },
    "llama": {
        "vocab_size": 32000,  # the Llama / Llama 2 SentencePiece vocabulary
        "max_position_embeddings": 4096,  # Llama 2's context
        "tie_word_embeddings": False,
        "position_embedding": "rotary",
        "bias": False,
        "norm": "rmsnorm",
        "activation": "swiglu",
        "parallel_residual": False,
    },
    "vit": {
        "tie_word_embeddings": False,  # nothing to tie: no vocabulary
        "position_embedding": "learned",
        "bias": True,
        "norm": "layernorm",
        "activation": "gelu",
        "parallel_residual": False,
        # ViT-B/16 at ImageNet resolution with the 1000-class head (Dosovitskiy et al. 2021)
        "image_size": 224,
        "patch_size": 16,
        "num_channels": 3,
        "num_labels": 1000,
        "use_class_token": True,
        "pooler": False,  # ViTForImageClassification has none; ViTModel adds one
    },
}


def default_intermediate_size(hidden_size: int, activation: str) -> int:
    """FFN width when none is given.

    GELU: 4h (GPT-2, ViT). SwiGLU: Meta's Llama rule, 2/3 of 4h rounded *up* to a multiple
    of 256 so the three matrices keep the 8h² parameters of a 4h GELU MLP while staying
    GEMM-friendly: h=4096 -> int(10922.7) = 10922 -> 11008 (Llama-2-7B), h=2048 -> 5632
    (TinyLlama). 8h/3 itself (10922) runs ~30% slower on H100 (co-design.md, rule 6).
    """
    if activation == "gelu":
        return 4 * hidden_size
    multiple_of = 256
    f = int(2 * (4 * hidden_size) / 3)
    return multiple_of * ((f + multiple_of - 1) // multiple_of)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelShape:
    """One transformer's shape. Sizes are counts (not bytes); see the module docstring."""

    arch: Arch
    """family: 'gpt' (GPT-2/NeoX), 'llama' (Llama/Mistral/Qwen2), 'vit' (encoder)"""
    hidden_size: int
    """h: width of the residual stream"""
    num_attention_heads: int
    """a: query heads; must divide hidden_size unless head_dim is given"""
    num_hidden_layers: int
    """L: transformer blocks"""
    num_key_value_heads: int | None = None
    """g: key/value heads (grouped-query attention); None: = num_attention_heads (MHA).
    Must divide num_attention_heads."""
    head_dim: int | None = None
    """d: width of one head; None: h / a. A config may decouple it (Mistral-NeMo: h 5120,
    32 heads of 128): the attention then is a·d wide, not h (q_size)"""
    intermediate_size: int | None = None
    """f: MLP width; None: 4h for GELU, Meta's 2/3·4h rounded up to 256 for SwiGLU"""
    vocab_size: int | None = None
    """v: token vocabulary, exactly as the model has it (pad with padded_vocab());
    text models only"""
    max_position_embeddings: int | None = None
    """rows of the learned position table, or the trained context for rotary models;
    text models only (a ViT's table has seq_len rows)"""
    tie_word_embeddings: bool | None = None
    """output layer shares the input embedding matrix (GPT-2, Qwen2-0.5B)"""
    position_embedding: PositionEmbedding | None = None
    """'learned' (a table of parameters), 'rotary' (none), or 'none'; never both"""
    rotary_pct: float = 1.0
    """fraction of each head's dims that rotary rotates (GPT-NeoX/Pythia: 0.25); no
    parameters or GEMM FLOPs depend on it"""
    bias: bool | None = None
    """biases on every linear layer (and LayerNorm's beta, as in nanoGPT), unless
    qkv_bias / mlp_bias say otherwise"""
    qkv_bias: bool | None = None
    """biases on the q, k, v projections only; None: = bias. Qwen2: True with bias=False;
    ViT's config field of the same name"""
    mlp_bias: bool | None = None
    """biases on the MLP projections; None: = bias (Llama's config field of the same name)"""
    norm: Norm | None = None
    """'layernorm' (weight, plus a bias when bias=True) or 'rmsnorm' (weight only)"""
    activation: Activation | None = None
    """'gelu': two matrices h×f and f×h; 'swiglu': three (gate, up, down)"""
    parallel_residual: bool | None = None
    """GPT-NeoX: attention and MLP read the same input; same parameters and FLOPs"""
    sliding_window: int | None = None
    """causal attention looks back at most this many tokens (Mistral-7B-v0.1: 4096) in the
    layers that ``layer_types`` windows (every layer when it is None); None: full causal
    attention. Text models only"""
    layer_types: tuple[LayerType, ...] | None = None
    """each layer's attention, in order, as Hugging Face configs state it:
    'sliding_attention' (a causal window of ``sliding_window`` keys) or 'full_attention'.
    GPT-OSS and Gemma 2 alternate them (window first), Gemma 3 windows 5 layers of 6 and
    Cohere2 3 of 4 (see docs/cost-model.md for the sources). None: every layer alike,
    windowed when ``sliding_window`` is set (Mistral-7B-v0.1). num_hidden_layers entries
    (a list is stored as a tuple). Text models only"""
    qk_norm: QkNorm = "none"
    """RMSNorm on queries and keys before rotary: 'head' (one weight of head_dim shared by
    the heads: Qwen3), 'full' (over all a·d query and g·d key columns: OLMoE), 'none'"""
    attention_sinks: bool = False
    """GPT-OSS: one learned sink logit per query head per layer"""
    sandwich_norm: bool = False
    """Gemma 2/3: a norm on the attention and on the MLP output too: 4 norms per layer"""
    shared_norm: bool = False
    """Cohere: with parallel_residual, attention and MLP read one norm: 1 norm per layer"""
    num_experts: int | None = None
    """E: routed experts per MoE layer; None: a dense model (every other MoE field unset)"""
    num_experts_per_tok: int | None = None
    """k: routed experts each token visits (top-k); required for MoE, at most num_experts"""
    moe_intermediate_size: int | None = None
    """each routed expert's FFN width; None: intermediate_size (Mixtral, OLMoE and GPT-OSS
    state only that one)"""
    num_shared_experts: int = 0
    """experts every token visits, held as one MLP (DeepSeek n_shared_experts; Qwen-MoE: 1)"""
    shared_expert_intermediate_size: int | None = None
    """width of that one shared MLP; None: num_shared_experts · moe_intermediate_size (as
    DeepSeek builds it)"""
    shared_expert_gate: bool = False
    """Qwen2-MoE: a sigmoid gate, an h×1 linear, scales the shared expert's output"""
    num_dense_layers: int = 0
    """leading layers that keep a dense MLP of intermediate_size (DeepSeek's
    first_k_dense_replace: V3 has 3); the other layers are MoE"""
    router: Router | None = None
    """how the router scores experts, an h×E linear either way: 'softmax' (Mixtral, Qwen,
    OLMoE, GPT-OSS, DeepSeek-V2) or 'sigmoid' (DeepSeek-V3); None: 'softmax' for MoE"""
    router_bias: bool = False
    """the router linear has a bias of E (GPT-OSS)"""
    kv_lora_rank: int | None = None
    """MLA: width of the compressed K/V latent (DeepSeek-V2/V3: 512); None: plain attention.
    With MLA, head_dim is the Q/K head dim (qk_nope_head_dim + qk_rope_head_dim)"""
    q_lora_rank: int | None = None
    """MLA: width of the compressed query (DeepSeek-V3: 1536); None: one h×a·d q_proj"""
    qk_rope_head_dim: int | None = None
    """MLA: the rotary part of head_dim, shared by all heads' keys (DeepSeek: 64)"""
    v_head_dim: int | None = None
    """MLA: width of one V head and of each head's output (DeepSeek: 128); None: head_dim"""
    image_size: int | None = None
    """ViT: square input image side, pixels"""
    patch_size: int | None = None
    """ViT: square patch side, pixels; must divide image_size"""
    num_channels: int | None = None
    """ViT: input channels (3 for RGB)"""
    num_labels: int | None = None
    """ViT: classifier outputs; 0: backbone only, no classifier"""
    use_class_token: bool | None = None
    """ViT: a learned [CLS] token is prepended (seq_len = patches + 1)"""
    pooler: bool | None = None
    """ViT: ViTModel's tanh pooler (an h×h dense on the class token)"""
    name: str = ""
    """free-form label, e.g. 'llama-2-7b'"""

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: defaults are filled in place, once
        if not isinstance(self.name, str):
            raise InputError(f"name: expected a string, got {self.name!r}")
        arch = choice("arch", self.arch, ARCHES)
        h = check_limit("hidden_size", check_int("hidden_size", self.hidden_size))
        a = check_limit("num_attention_heads",
                        check_int("num_attention_heads", self.num_attention_heads))
        check_limit("num_hidden_layers", check_int("num_hidden_layers", self.num_hidden_layers))
        if self.head_dim is None:
            if h % a:
                raise InputError(
                    f"num_attention_heads: {a} does not divide hidden_size {h} "
                    f"(head_dim = hidden_size / num_attention_heads must be an integer, "
                    f"or give head_dim)"
                )
            set_(self, "head_dim", h // a)
        check_limit("head_dim", check_int("head_dim", self.head_dim), key="hidden_size")
        if self.num_key_value_heads is None:
            set_(self, "num_key_value_heads", a)
        g = check_int("num_key_value_heads", self.num_key_value_heads)
        if a % g:
            raise InputError(
                f"num_key_value_heads: {g} does not divide num_attention_heads {a} "
                f"(each key/value head serves a whole group of query heads)"
            )

        # Family defaults for everything left as None.
        for key, value in ARCH_DEFAULTS[arch].items():
            if getattr(self, key) is None:
                set_(self, key, value)
        for key in ("qkv_bias", "mlp_bias"):
            if getattr(self, key) is None:
                set_(self, key, self.bias)

        choice("position_embedding", self.position_embedding, _POSITION_EMBEDDINGS)
        choice("norm", self.norm, _NORMS)
        activation = choice("activation", self.activation, _ACTIVATIONS)
        for key in ("tie_word_embeddings", "bias", "qkv_bias", "mlp_bias", "parallel_residual"):
            check_bool(key, getattr(self, key))
        pct = self.rotary_pct
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 < pct <= 1:
            raise InputError(f"rotary_pct: must be a number in (0, 1], got {pct!r}")
        set_(self, "rotary_pct", float(pct))

        if self.intermediate_size is None:
            set_(self, "intermediate_size", default_intermediate_size(h, activation))
        check_limit("intermediate_size", check_int("intermediate_size", self.intermediate_size))

        if arch == "vit":
            self._check_vit()
        else:
            self._check_text()
        choice("qk_norm", self.qk_norm, _QK_NORMS)
        check_bool("attention_sinks", self.attention_sinks)
        check_bool("sandwich_norm", self.sandwich_norm)
        if check_bool("shared_norm", self.shared_norm) and not self.parallel_residual:
            raise InputError("shared_norm: one norm for attention and MLP needs "
                             "parallel_residual (both read the same input)")
        self._check_moe()
        self._check_mla()

    def _check_moe(self) -> None:
        set_ = object.__setattr__
        if self.num_experts is None:
            for key in MOE_FIELDS:
                if getattr(self, key) not in (None, 0, False):
                    raise InputError(f"{key}: only a mixture-of-experts model has it "
                                     f"(num_experts is not set)")
            return
        if self.arch == "vit":
            raise InputError("num_experts: mixture-of-experts ViTs are not modelled")
        e = check_limit("num_experts", check_int("num_experts", self.num_experts))
        if self.num_experts_per_tok is None:
            raise InputError("num_experts_per_tok: required for a mixture-of-experts model "
                             "(the top-k experts each token visits)")
        k = check_int("num_experts_per_tok", self.num_experts_per_tok)
        if k > e:
            raise InputError(f"num_experts_per_tok: {k} exceeds num_experts {e} (a token "
                             f"cannot visit more experts than there are)")
        if self.moe_intermediate_size is None:
            set_(self, "moe_intermediate_size", self.intermediate_size)
        check_limit("moe_intermediate_size",
                    check_int("moe_intermediate_size", self.moe_intermediate_size),
                    key="intermediate_size")
        shared = check_int("num_shared_experts", self.num_shared_experts, minimum=0)
        if shared:
            if self.shared_expert_intermediate_size is None:
                set_(self, "shared_expert_intermediate_size",
                     shared * self.moe_intermediate_size)  # type: ignore[operator]
            check_limit("shared_expert_intermediate_size",
                        check_int("shared_expert_intermediate_size",
                                  self.shared_expert_intermediate_size), key="intermediate_size")
        else:
            for key in ("shared_expert_intermediate_size", "shared_expert_gate"):
                if getattr(self, key) not in (None, False):
                    raise InputError(f"{key}: needs num_shared_experts > 0")
        check_bool("shared_expert_gate", self.shared_expert_gate)
        dense = check_int("num_dense_layers", self.num_dense_layers, minimum=0)
        if dense >= self.num_hidden_layers:
            raise InputError(f"num_dense_layers: {dense} leaves no MoE layer among "
                             f"num_hidden_layers {self.num_hidden_layers}")
        if self.router is None:
            set_(self, "router", "softmax")
        choice("router", self.router, _ROUTERS)
        check_bool("router_bias", self.router_bias)

    def _check_mla(self) -> None:
        if self.kv_lora_rank is None:
            for key in MLA_FIELDS:
                if getattr(self, key) is not None:
                    raise InputError(f"{key}: only multi-head latent attention has it "
                                     f"(kv_lora_rank is not set)")
            return
        if self.arch != "llama":
            raise InputError(f"kv_lora_rank: latent attention is modelled for the llama "
                             f"family only (arch is {self.arch!r})")
        check_limit("kv_lora_rank", check_int("kv_lora_rank", self.kv_lora_rank),
                    key="hidden_size")
        if self.q_lora_rank is not None:
            check_limit("q_lora_rank", check_int("q_lora_rank", self.q_lora_rank),
                        key="hidden_size")
        if self.qk_rope_head_dim is None:
            raise InputError("qk_rope_head_dim: required with kv_lora_rank (the rotary part "
                             "of each query/key head)")
        rope = check_int("qk_rope_head_dim", self.qk_rope_head_dim)
        if rope >= self.head_dim:  # type: ignore[operator]
            raise InputError(f"qk_rope_head_dim: {rope} must be below head_dim "
                             f"{self.head_dim} (head_dim = qk_nope_head_dim + qk_rope_head_dim)")
        if self.v_head_dim is None:
            object.__setattr__(self, "v_head_dim", self.head_dim)
        check_limit("v_head_dim", check_int("v_head_dim", self.v_head_dim), key="hidden_size")
        if self.kv_heads != self.num_attention_heads:
            raise InputError(f"num_key_value_heads: latent attention decompresses one K and V "
                             f"per query head ({self.num_attention_heads}), got {self.kv_heads}")
        if self.bias or self.qkv_bias:
            raise InputError("bias: latent attention with biases is not modelled")

    def _check_text(self) -> None:
        for key in VIT_FIELDS:
            if getattr(self, key) is not None:
                raise InputError(f"{key}: only a ViT has it (arch is {self.arch!r})")
        check_limit("vocab_size", check_int("vocab_size", self.vocab_size))
        check_int("max_position_embeddings", self.max_position_embeddings)
        if self.sliding_window is not None:
            check_int("sliding_window", self.sliding_window)
        if self.layer_types is not None:  # stored as a tuple: hashable, as a field must be
            object.__setattr__(self, "layer_types", check_layer_types(
                self.layer_types, self.num_hidden_layers, self.sliding_window))

    def _check_vit(self) -> None:
        for key in TEXT_FIELDS:
            if getattr(self, key) is not None:
                raise InputError(f"{key}: a ViT has none (it has num_labels and image_size)")
        if self.tie_word_embeddings:
            raise InputError("tie_word_embeddings: a ViT has no word embeddings to tie")
        image = check_int("image_size", self.image_size)
        patch = check_int("patch_size", self.patch_size)
        if image % patch:
            raise InputError(f"patch_size: {patch} does not divide image_size {image}")
        if (image // patch) ** 2 > LIMITS["seq_len"]:
            raise InputError(f"image_size: {(image // patch) ** 2} patches per image is beyond "
                             f"any model that trains (limit {LIMITS['seq_len']})")
        check_int("num_channels", self.num_channels)
        check_int("num_labels", self.num_labels, minimum=0)
        check_bool("use_class_token", self.use_class_token)
        check_bool("pooler", self.pooler)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def gpt(cls, **fields: Any) -> ModelShape:
        """A GPT-2-style shape: ``ModelShape.gpt(hidden_size=768, num_attention_heads=12,
        num_hidden_layers=12)`` is GPT-2 small with the vocabulary padded to 50304."""
        return cls(arch="gpt", **fields)

    @classmethod
    def llama(cls, **fields: Any) -> ModelShape:
        """A Llama-style shape (RMSNorm, SwiGLU, rotary, untied, no biases)."""
        return cls(arch="llama", **fields)

    @classmethod
    def vit(cls, **fields: Any) -> ModelShape:
        """A ViT encoder with a classifier; defaults are ViT-B/16's 224-pixel, 1000-class
        setup, so ``ModelShape.vit(hidden_size=768, num_attention_heads=12,
        num_hidden_layers=12)`` is google/vit-base-patch16-224."""
        return cls(arch="vit", **fields)

    def replace(self, **changes: Any) -> ModelShape:
        """A copy with ``changes`` applied, validated again.

        Fields keep their current values, defaults included: ``replace(hidden_size=...)``
        keeps ``intermediate_size``; pass it too if it should follow the new width. A head
        dim that was h / a follows a new hidden size or head count; a decoupled one stays.
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise InputError(f"{unknown[0]}: not a ModelShape field")
        if ("head_dim" not in changes and not self.decoupled_head_dim
                and {"hidden_size", "num_attention_heads"} & set(changes)):
            changes = {**changes, "head_dim": None}  # a coupled head dim follows h / a
        if ("layer_types" not in changes and self.layer_types is not None
                and changes.get("num_hidden_layers", self.num_hidden_layers)
                != self.num_hidden_layers):
            # a repeating pattern follows a new layer count (GPT-OSS's window/full pairs)
            changes = {**changes, "layer_types": retile(
                self.layer_types, changes["num_hidden_layers"])}
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (inverse of :meth:`from_dict`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelShape:
        """Build from a :meth:`to_dict` mapping; unknown keys are errors naming the key."""
        if not isinstance(data, Mapping):
            raise InputError(f"shape: expected a mapping of fields, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in names:
                raise InputError(f"{key}: not a ModelShape field")
        for key in ("arch", "hidden_size", "num_attention_heads", "num_hidden_layers"):
            if key not in data:
                raise InputError(f"{key}: missing")
        return cls(**data)

    # ------------------------------------------------------------------ derived sizes
    @property
    def decoupled_head_dim(self) -> bool:
        """True when head_dim is not h / a (a·d ≠ h)."""
        return self.q_size != self.hidden_size

    @property
    def q_size(self) -> int:
        """a·d: the width of Q and of the attention output (= h unless head_dim is
        decoupled)."""
        return self.num_attention_heads * self.head_dim  # type: ignore[operator]

    @property
    def kv_heads(self) -> int:
        """g, never None after construction (num_key_value_heads, typed as int)."""
        return self.num_key_value_heads  # type: ignore[return-value]

    @property
    def ffn_size(self) -> int:
        """f, never None after construction (intermediate_size, typed as int)."""
        return self.intermediate_size  # type: ignore[return-value]

    @property
    def window_layers(self) -> int:
        """Layers whose attention is a causal window of ``sliding_window`` keys (0 when no
        window is set; all of them when ``layer_types`` is None and a window is)."""
        if self.sliding_window is None or self.arch == "vit":
            return 0
        if self.layer_types is None:
            return self.num_hidden_layers
        return sum(kind == "sliding_attention" for kind in self.layer_types)

    def layer_window(self, layer: int) -> int | None:
        """The attention window of layer ``layer`` (0-based) in keys; None: full attention."""
        if self.sliding_window is None or self.arch == "vit":
            return None
        if self.layer_types is None or self.layer_types[layer] == "sliding_attention":
            return self.sliding_window
        return None

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model (num_experts set)."""
        return self.num_experts is not None

    @property
    def moe_layers(self) -> int:
        """Layers whose MLP is a router and experts (0 for a dense model)."""
        return self.num_hidden_layers - self.num_dense_layers if self.is_moe else 0

    @property
    def mla(self) -> bool:
        """True for DeepSeek's multi-head latent attention (kv_lora_rank set)."""
        return self.kv_lora_rank is not None

    @property
    def v_dim(self) -> int:
        """Width of one V head and of each head's output: v_head_dim, else head_dim."""
        return self.v_head_dim if self.v_head_dim is not None else self.head_dim  # type: ignore[return-value]

    @property
    def v_size(self) -> int:
        """a·d_v: the width of the attention output (= q_size unless MLA decouples V)."""
        return self.num_attention_heads * self.v_dim

    @property
    def causal(self) -> bool:
        """Decoders mask the future (half the attention FLOPs); a ViT encoder does not."""
        return self.arch != "vit"

    @property
    def num_patches(self) -> int:
        """ViT: (image / patch)²; 196 for 224-pixel images and 16-pixel patches."""
        if self.arch != "vit":
            raise InputError(f"image_size: only a ViT has patches (arch is {self.arch!r})")
        side = self.image_size // self.patch_size  # type: ignore[operator]
        return side * side

    @property
    def seq_len(self) -> int:
        """ViT: tokens per image, (image/patch)² + 1 class token: 197 for ViT-B/16 at 224.

        A text model's sequence length is a property of the run, not of the shape: pass
        ``seq_len=`` to the FLOP and memory functions instead.
        """
        if self.arch != "vit":
            raise InputError(
                f"seq_len: a text model's sequence length is chosen per run, not fixed by its "
                f"shape (arch is {self.arch!r}); pass seq_len= explicitly"
            )
        return self.num_patches + (1 if self.use_class_token else 0)

    def padded_vocab(self, multiple: int = 64) -> int:
        """vocab_size rounded up to a multiple of ``multiple`` (50257 -> 50304 for 64).

        Use ``multiple = 64 * tp`` so every tensor-parallel rank's logits slice stays aligned.
        """
        m = check_int("multiple", multiple)
        if self.vocab_size is None:
            raise InputError("vocab_size: a ViT has no vocabulary to pad")
        return -(-self.vocab_size // m) * m


def resolve_seq_len(shape: ModelShape, seq_len: int | None) -> int:
    """The sequence length a run uses: required for text models, fixed for a ViT.

    A text model with learned positions cannot run past its table. A ViT's tokens follow
    from its image and patch sizes; to model another resolution, ``replace(image_size=...)``.
    """
    if shape.arch == "vit":
        if seq_len is not None and seq_len != shape.seq_len:
            raise InputError(
                f"seq_len: {seq_len!r} differs from this ViT's {shape.seq_len} tokens "
                f"((image_size/patch_size)^2 + class token); change image_size instead"
            )
        return shape.seq_len
    if seq_len is None:
        raise InputError("seq_len: required for a text model")
    s = check_int("seq_len", seq_len)
    if shape.position_embedding == "learned" and s > shape.max_position_embeddings:  # type: ignore[operator]
        raise InputError(
            f"seq_len: {s} exceeds max_position_embeddings {shape.max_position_embeddings} "
            f"(learned positions have no row for later tokens)"
        )
    return s
