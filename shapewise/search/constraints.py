"""The constraints a practitioner puts on a shape, with their defaults and where each comes from.

The search's objective, predicted training throughput at equal parameter count, always
prefers wider and shallower shapes; depth is a quality decision, not a throughput one. So the
shape is bounded by the rules people actually train under, each an explicit field of
:class:`Constraints` with a documented default:

* **Aspect ratio** hidden ÷ layers in a band. Kaplan et al. 2020 ("Scaling Laws for Neural
  Language Models", arXiv:2001.08361, fig. 5) found the loss within a few percent over
  aspect ratios of roughly 20 to 200 at fixed parameter count; the published decoder
  families sit at 64-128 (GPT-3 Small 64, GPT-3 2.7B 80, GPT-3 6.7B and 13B 128, Llama-2-7B
  128, Llama-2-70B 102, Mistral-7B 128, OLMo-7B 128), so the decoder default is
  :data:`DECODER_ASPECT` = (64, 128). ViTs are deeper: ViT-B 64, ViT-L 43, ViT-H 40
  (Dosovitskiy et al. 2021, table 1), ViT-g 35 (Zhai et al. 2022, table 2), so the ViT
  default is :data:`VIT_ASPECT` = (32, 64). Below 100M parameters no family anchors the
  band (TinyStories' 1M-33M models, Eldan & Li 2023, arXiv:2305.07759, span aspect 8-192)
  and a 64-wide head leaves few widths, so small decoders take Kaplan's whole flat range,
  :data:`SMALL_ASPECT` = (20, 200). ``layers`` pins the depth instead.
* **Head dim** in (64, 128) by default: FlashAttention's fast paths and the published
  families' choices; 256 is allowed (``head_dims=(64, 128, 256)``).
* **Heads divisible by the largest tensor-parallel degree planned** (``max_tp``), so that
  each TP rank holds whole heads (Megatron-LM splits attention by heads). When not given it
  depends on the budget (:func:`default_max_tp`): 1 under 100M parameters (such a model
  trains on one GPU), 4 under 1B, 8 from 1B (one 8-GPU node's NVLink or Infinity Fabric
  domain, the TP degree Megatron-LM and Llama 2 use for 7B-70B). It is never less than the
  ``tp`` the step is priced at.
* **GQA**: the KV heads g divide the heads, and ``max_tp`` divides g (Megatron-LM asserts
  ``num_query_groups % tensor_model_parallel_size == 0``: each rank holds whole KV groups).
* **Layers divisible by the pipeline stages** (``pipeline_stages``). When not given: 1
  under 40B parameters, 4 from 40B (:func:`default_pipeline_stages`): from 40B the weights,
  gradients and Adam states alone (16 bytes a parameter, 640 GB) fill all the HBM of one
  8-GPU node of 80 GB GPUs, so such a model is commonly pipelined across nodes, and a prime
  depth cannot be split
  (Llama-2-70B's 80, OPT-66B's 64 and GPT-3 175B's 96 layers are multiples of 8).
* **FFN rule per arch**: GELU models use 4h (GPT-2/3, ViT); SwiGLU models use
  ``ffn_ratio`` · h (default 8/3, so the three matrices hold the 8h² of a 4h GELU MLP)
  rounded up to a multiple of ``ffn_multiple`` (default 256), Meta's Llama rule: h 4096 →
  11008. The FFN is a rule, not a searched dimension, so the alternatives differ in real
  decisions; it moves off the rule only where the cost model prices another multiple of
  64 within ±5% at least 5% faster, as ``shapewise check``'s ffn-size rule would ask
  (:mod:`shapewise.search.ffn`; e.g. 4h = 10240 on MI300X).
* **Vocabulary** from the user's tokenizer: ``vocab_size``, or ``tokenizer`` looked up in
  :data:`TOKENIZERS` (each size with its source). Left out, each arch says which tokenizer
  it assumes (:data:`ARCH_TOKENIZER`), and the recommendation notes it.
* **Minimum sizes**: depth from 2 layers (induction heads need two: Olsson et al. 2022)
  and head dims from 64, so budgets of 1M-30M parameters (TinyStories-class models) are
  searchable with a small vocabulary.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from shapewise.errors import InputError

#: hidden ÷ layers band of published decoder families (module docstring)
DECODER_ASPECT: tuple[float, float] = (64.0, 128.0)
#: hidden ÷ layers band of published ViTs (module docstring)
VIT_ASPECT: tuple[float, float] = (32.0, 64.0)
#: hidden ÷ layers band of decoders under SMALL_BELOW parameters: Kaplan's flat range
SMALL_ASPECT: tuple[float, float] = (20.0, 200.0)
SMALL_BELOW = 100e6
DEFAULT_HEAD_DIMS: tuple[int, ...] = (64, 128)
#: SwiGLU FFN: Meta's Llama rule rounds 8/3·h up to a multiple of 256
DEFAULT_FFN_MULTIPLE = 256
SWIGLU_RATIO = 8 / 3
GELU_RATIO = 4.0
#: budgets (parameters) from which the default max_tp steps up, and the degree
TP_STEPS: tuple[tuple[float, int], ...] = ((1e9, 8), (100e6, 4), (0.0, 1))
#: budget from which layers default to a multiple of PIPELINE_DEFAULT stages
PIPELINE_FROM = 40e9
PIPELINE_DEFAULT = 4
#: vocabulary padding searched, times max_tp (64: tensor-core aligned logits GEMM per rank)
VOCAB_MULTIPLES: tuple[int, ...] = (64, 128)


@dataclass(frozen=True, slots=True)
class Tokenizer:
    """A tokenizer's vocabulary size and where the figure comes from."""

    vocab_size: int
    source: str


#: vocabulary sizes of common tokenizers: the embedding rows of the named model's published
#: config.json (some of them already padded by their authors, as stated)
TOKENIZERS: dict[str, Tokenizer] = {
    "gpt2": Tokenizer(50257, "openai-community/gpt2 config.json vocab_size (GPT-2/GPT-3 BPE)"),
    "opt": Tokenizer(50272, "facebook/opt-1.3b config.json vocab_size"),
    "olmo": Tokenizer(50280, "allenai/OLMo-7B config vocab_size (embedding_size pads it "
                             "to 50304)"),
    "llama-2": Tokenizer(32000, "meta-llama/Llama-2-7b-hf config.json vocab_size"),
    "mistral": Tokenizer(32000, "mistralai/Mistral-7B-v0.1 config.json vocab_size"),
    "llama-3": Tokenizer(128256, "meta-llama/Meta-Llama-3-8B (and Llama-3.1/3.2) "
                                 "config.json vocab_size"),
    "qwen2.5": Tokenizer(151936, "Qwen/Qwen2.5-0.5B config.json vocab_size (padded by Qwen; "
                                 "the 7B and larger configs pad to 152064)"),
    "mistral-nemo": Tokenizer(131072, "mistralai/Mistral-Nemo-Base-2407 config.json "
                                      "vocab_size (Tekken)"),
    "gemma": Tokenizer(256000, "google/gemma-7b config.json vocab_size"),
}
#: aliases users type for the same tokenizers
TOKENIZER_ALIASES: dict[str, str] = {
    "gpt-2": "gpt2", "gpt3": "gpt2", "gpt-3": "gpt2", "llama2": "llama-2", "llama": "llama-2",
    "llama3": "llama-3", "llama-3.1": "llama-3", "llama-3.2": "llama-3", "qwen2": "qwen2.5",
    "qwen": "qwen2.5", "tekken": "mistral-nemo",
}
#: the tokenizer each arch assumes when neither vocab_size nor tokenizer is given (the
#: recommendation notes it, so a Llama never silently gets GPT-2's vocabulary)
ARCH_TOKENIZER: dict[str, str] = {"gpt": "gpt2", "llama": "llama-2"}


def get_tokenizer(name: str) -> tuple[str, Tokenizer]:
    """(canonical name, Tokenizer) for ``name``; InputError lists the known ones."""
    if not isinstance(name, str):
        raise InputError(f"tokenizer: expected a name, got {name!r}")
    key = name.strip().lower()
    key = TOKENIZER_ALIASES.get(key, key)
    if key not in TOKENIZERS:
        raise InputError(f"tokenizer: unknown {name!r}; known: {', '.join(sorted(TOKENIZERS))} "
                         "(or give the vocabulary size itself)")
    return key, TOKENIZERS[key]


def default_max_tp(params: float) -> int:
    """The largest TP degree assumed planned for a budget (see the module docstring)."""
    for floor, tp in TP_STEPS:
        if params >= floor:
            return tp
    return 1


def default_pipeline_stages(params: float) -> int:
    """The pipeline stages assumed planned for a budget (see the module docstring)."""
    return PIPELINE_DEFAULT if params >= PIPELINE_FROM else 1


def _pos_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise InputError(f"{name}: must be a positive integer, got {v!r}")
    return int(v)


@dataclass(frozen=True, slots=True, kw_only=True)
class Constraints:
    """What the shape must satisfy besides the budget; ``None`` takes the documented default
    (module docstring). Frozen: pass a new one to change any rule."""

    aspect: tuple[float, float] | None = None
    """(min, max) hidden ÷ layers; None: (64, 128) for decoders, (20, 200) for decoders
    under 100M parameters, (32, 64) for ViT"""
    layers: int | None = None
    """pin the depth (the aspect band is then not applied)"""
    head_dims: tuple[int, ...] = DEFAULT_HEAD_DIMS
    """head dims allowed (64 and 128 by default; 256 allowed)"""
    max_tp: int | None = None
    """largest tensor-parallel degree planned: heads and KV heads divisible by it; None:
    1 under 100M parameters, 4 under 1B, 8 from 1B (and at least the priced tp)"""
    pipeline_stages: int | None = None
    """layers must be a multiple of this; None: 1 under 40B parameters, 4 from 40B"""
    kv_ratios: tuple[int, ...] | None = None
    """heads ÷ KV heads searched (GQA); None: (1, 2, 4, 8) for Llama, 1 otherwise"""
    ffn_ratio: float | None = None
    """FFN ÷ hidden before rounding; None: 4 for GELU, 8/3 for SwiGLU"""
    ffn_multiple: int | None = None
    """SwiGLU FFN rounded up to a multiple of this; None: 256 (GELU's 4h is exact)"""
    vocab_size: int | None = None
    """the tokenizer's vocabulary (padded by the search); wins over ``tokenizer``"""
    tokenizer: str | None = None
    """a name in TOKENIZERS; None with no vocab_size: the arch's (ARCH_TOKENIZER)"""

    def __post_init__(self) -> None:
        if self.aspect is not None and (
                not isinstance(self.aspect, tuple) or len(self.aspect) != 2
                or not all(isinstance(x, numbers.Real) and not isinstance(x, bool)
                           and math.isfinite(x) for x in self.aspect)
                or not 0 < self.aspect[0] <= self.aspect[1]):
            raise InputError(f"aspect: need (min, max) with 0 < min <= max, got "
                             f"{self.aspect!r}")
        if self.layers is not None:
            _pos_int("layers", self.layers)
        if not isinstance(self.head_dims, tuple) or not self.head_dims:
            raise InputError(f"head_dims: need a tuple of head dims, got {self.head_dims!r}")
        for d in self.head_dims:
            _pos_int("head_dims", d)
            if d % 8:
                raise InputError(f"head_dims: {d} is not a multiple of 8 (FlashAttention "
                                 "needs one)")
        if self.max_tp is not None:
            _pos_int("max_tp", self.max_tp)
        if self.pipeline_stages is not None:
            _pos_int("pipeline_stages", self.pipeline_stages)
        if (self.layers is not None and self.pipeline_stages is not None
                and self.layers % self.pipeline_stages):
            raise InputError(f"layers: {self.layers} is not a multiple of pipeline_stages "
                             f"{self.pipeline_stages}")
        if self.kv_ratios is not None:
            if not isinstance(self.kv_ratios, tuple) or not self.kv_ratios:
                raise InputError(f"kv_ratios: need a tuple, got {self.kv_ratios!r}")
            for r in self.kv_ratios:
                _pos_int("kv_ratios", r)
        if self.ffn_ratio is not None and (
                isinstance(self.ffn_ratio, bool) or not isinstance(self.ffn_ratio, numbers.Real)
                or not 0.5 <= self.ffn_ratio <= 16):
            raise InputError(f"ffn_ratio: must be a number in [0.5, 16], got {self.ffn_ratio!r}")
        if self.ffn_multiple is not None:
            _pos_int("ffn_multiple", self.ffn_multiple)
        if self.vocab_size is not None:
            _pos_int("vocab_size", self.vocab_size)
        if self.tokenizer is not None:
            get_tokenizer(self.tokenizer)

    # ------------------------------------------------------------------ resolved values
    def aspect_band(self, arch: str, params: float = SMALL_BELOW) -> tuple[float, float]:
        """The aspect band asked for, or the default for the arch and budget."""
        if self.aspect is not None:
            return (float(self.aspect[0]), float(self.aspect[1]))
        if arch == "vit":
            return VIT_ASPECT
        return SMALL_ASPECT if params < SMALL_BELOW else DECODER_ASPECT

    def tp_degree(self, params: float, tp: int) -> int:
        """max_tp (or its size-dependent default), raised to a multiple of the priced tp."""
        m = self.max_tp if self.max_tp is not None else default_max_tp(params)
        return m if m % tp == 0 else math.lcm(m, tp)

    def stages(self, params: float) -> int:
        """pipeline_stages, or its size-dependent default (1 when the depth is pinned)."""
        if self.pipeline_stages is not None:
            return int(self.pipeline_stages)
        return 1 if self.layers is not None else default_pipeline_stages(params)

    def ratios(self, arch: str) -> tuple[int, ...]:
        if self.kv_ratios is not None:
            return self.kv_ratios if arch == "llama" else (1,)
        return (1, 2, 4, 8) if arch == "llama" else (1,)

    def ffn_size(self, arch: str, h: int) -> int:
        """The FFN rule of the arch applied to hidden size h."""
        if arch == "llama":
            ratio = SWIGLU_RATIO if self.ffn_ratio is None else float(self.ffn_ratio)
            m = self.ffn_multiple or DEFAULT_FFN_MULTIPLE
            # round 8/3·h first so float noise does not push an exact multiple up
            return m * math.ceil(round(ratio * h, 6) / m)
        ratio = GELU_RATIO if self.ffn_ratio is None else float(self.ffn_ratio)
        f = round(ratio * h)
        if self.ffn_multiple:
            f = self.ffn_multiple * math.ceil(f / self.ffn_multiple)
        return f

    def vocab(self, arch: str) -> tuple[int | None, str]:
        """(vocabulary size, where it came from); (None, '') for ViT."""
        if arch == "vit":
            return None, ""
        if self.vocab_size is not None:
            return int(self.vocab_size), "--vocab-size"
        name = self.tokenizer or ARCH_TOKENIZER[arch]
        key, tok = get_tokenizer(name)
        how = "" if self.tokenizer else f", the {arch} default; pass vocab_size or tokenizer"
        return tok.vocab_size, f"tokenizer {key!r} ({tok.source}{how})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "aspect": list(self.aspect) if self.aspect else None, "layers": self.layers,
            "head_dims": list(self.head_dims), "max_tp": self.max_tp,
            "pipeline_stages": self.pipeline_stages,
            "kv_ratios": list(self.kv_ratios) if self.kv_ratios else None,
            "ffn_ratio": self.ffn_ratio, "ffn_multiple": self.ffn_multiple,
            "vocab_size": self.vocab_size, "tokenizer": self.tokenizer,
        }
