"""Published shapes users recognise, each from its paper or its config.json.

A recommendation is compared with the nearest of these for its arch and budget: their
dimensions (hidden, heads, head dim, KV heads, layers, FFN) built in the user's architecture
family, vocabulary and sequence length (so the comparison isolates the shape), priced by the
same model. Each row says where its dimensions come from; they were checked against the
cited paper table or the model's config.json.

The gpt-family rows (GPT-3, Pythia, OPT) are GELU MLPs of 4h (OPT uses ReLU, same sizes);
the llama-family rows (SmolLM2, Llama 2, Llama 3, Mistral, Qwen2.5, OLMo) are SwiGLU with their
published FFN; ViT rows are encoders with a 4h (ViT-g: 48/11·h) MLP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shapewise.errors import InputError
from shapewise.model.shape import ModelShape


@dataclass(frozen=True, slots=True)
class Published:
    """One published shape: its dimensions and where they are written."""

    name: str
    family: str
    """'gpt', 'llama' or 'vit': the arch family it is compared in"""
    hidden_size: int
    num_attention_heads: int
    num_hidden_layers: int
    intermediate_size: int
    source: str
    num_key_value_heads: int | None = None
    """None: MHA"""
    head_dim: int | None = None
    """None: hidden / heads; set where the paper decouples it (GPT-3 13B)"""

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def dims(self) -> tuple[int, ...]:
        """What makes two rows the same shape (OPT-125m and GPT-3 Small are)."""
        return (self.hidden_size, self.num_attention_heads, self.kv_heads,
                self.num_hidden_layers, self.intermediate_size, self.head_dim or 0)


_GPT3 = "Brown et al. 2020 (arXiv:2005.14165), table 2.1"
_PYTHIA = "Biderman et al. 2023 (arXiv:2304.01373), table 1; EleutherAI/{} config.json"
_OPT = "Zhang et al. 2022 (arXiv:2205.01068), table 1; facebook/{} config.json"
_HF = "{} config.json"
_VIT = "Dosovitskiy et al. 2021 (arXiv:2010.11929), table 1"


def _gpt(name: str, h: int, a: int, L: int, src: str, d: int | None = None) -> Published:
    return Published(name, "gpt", h, a, L, 4 * h, src, head_dim=d)


def _llama(name: str, h: int, a: int, g: int, L: int, f: int, src: str) -> Published:
    return Published(name, "llama", h, a, L, f, src, num_key_value_heads=g)


PUBLISHED: tuple[Published, ...] = (
    # GPT-3 family. Table 2.1 lists GPT-3 XL as 24 heads of 128, which does not multiply to
    # its d_model 2048; 16 heads of 128 keeps d_model, d_head and the 1.3B count. GPT-3 13B
    # has d_model 5140 with 40 heads of 128 (a 5120-wide attention).
    _gpt("GPT-3 Small", 768, 12, 12, _GPT3),
    _gpt("GPT-3 Medium", 1024, 16, 24, _GPT3),
    _gpt("GPT-3 Large", 1536, 16, 24, _GPT3),
    _gpt("GPT-3 XL", 2048, 16, 24, _GPT3 + " (24 heads as printed do not divide d_model "
         "2048; 16 heads of d_head 128)"),
    _gpt("GPT-3 2.7B", 2560, 32, 32, _GPT3),
    _gpt("GPT-3 6.7B", 4096, 32, 32, _GPT3),
    _gpt("GPT-3 13B", 5140, 40, 40, _GPT3, d=128),
    _gpt("GPT-3 175B", 12288, 96, 96, _GPT3),
    # Pythia (GPT-NeoX): the table's layers, model dim and heads
    _gpt("Pythia-70M", 512, 8, 6, _PYTHIA.format("pythia-70m")),
    _gpt("Pythia-160M", 768, 12, 12, _PYTHIA.format("pythia-160m")),
    _gpt("Pythia-410M", 1024, 16, 24, _PYTHIA.format("pythia-410m")),
    _gpt("Pythia-1B", 2048, 8, 16, _PYTHIA.format("pythia-1b")),
    _gpt("Pythia-1.4B", 2048, 16, 24, _PYTHIA.format("pythia-1.4b")),
    _gpt("Pythia-2.8B", 2560, 32, 32, _PYTHIA.format("pythia-2.8b")),
    _gpt("Pythia-6.9B", 4096, 32, 32, _PYTHIA.format("pythia-6.9b")),
    _gpt("Pythia-12B", 5120, 40, 36, _PYTHIA.format("pythia-12b")),
    # OPT (OPT-350m projects its 512-wide embeddings to 1024; left out)
    _gpt("OPT-125m", 768, 12, 12, _OPT.format("opt-125m")),
    _gpt("OPT-1.3b", 2048, 32, 24, _OPT.format("opt-1.3b")),
    _gpt("OPT-2.7b", 2560, 32, 32, _OPT.format("opt-2.7b")),
    _gpt("OPT-6.7b", 4096, 32, 32, _OPT.format("opt-6.7b")),
    _gpt("OPT-13b", 5120, 40, 40, _OPT.format("opt-13b")),
    _gpt("OPT-30b", 7168, 56, 48, _OPT.format("opt-30b")),
    _gpt("OPT-66b", 9216, 72, 64, _OPT.format("opt-66b")),
    # SmolLM2 (Llama architecture, the small end of the llama family)
    _llama("SmolLM2-135M", 576, 9, 3, 30, 1536, _HF.format("HuggingFaceTB/SmolLM2-135M")),
    _llama("SmolLM2-360M", 960, 15, 5, 32, 2560, _HF.format("HuggingFaceTB/SmolLM2-360M")),
    # Llama 2 / Llama 3 (Meta's HF configs)
    _llama("Llama-2-7B", 4096, 32, 32, 32, 11008, _HF.format("meta-llama/Llama-2-7b-hf")),
    _llama("Llama-2-13B", 5120, 40, 40, 40, 13824, _HF.format("meta-llama/Llama-2-13b-hf")),
    _llama("Llama-2-70B", 8192, 64, 8, 80, 28672, _HF.format("meta-llama/Llama-2-70b-hf")),
    _llama("Llama-3.2-1B", 2048, 32, 8, 16, 8192, _HF.format("meta-llama/Llama-3.2-1B")),
    _llama("Llama-3.2-3B", 3072, 24, 8, 28, 8192, _HF.format("meta-llama/Llama-3.2-3B")),
    _llama("Llama-3.1-8B", 4096, 32, 8, 32, 14336, _HF.format("meta-llama/Llama-3.1-8B")),
    _llama("Llama-3.1-70B", 8192, 64, 8, 80, 28672, _HF.format("meta-llama/Llama-3.1-70B")),
    _llama("Mistral-7B", 4096, 32, 8, 32, 14336, _HF.format("mistralai/Mistral-7B-v0.1")),
    # Qwen2.5 (Qwen's HF configs; the 7B's equals Qwen2-7B's)
    _llama("Qwen2.5-0.5B", 896, 14, 2, 24, 4864, _HF.format("Qwen/Qwen2.5-0.5B")),
    _llama("Qwen2.5-1.5B", 1536, 12, 2, 28, 8960, _HF.format("Qwen/Qwen2.5-1.5B")),
    _llama("Qwen2.5-3B", 2048, 16, 2, 36, 11008, _HF.format("Qwen/Qwen2.5-3B")),
    _llama("Qwen2.5-7B", 3584, 28, 4, 28, 18944, _HF.format("Qwen/Qwen2.5-7B")),
    _llama("Qwen2.5-14B", 5120, 40, 8, 48, 13824, _HF.format("Qwen/Qwen2.5-14B")),
    _llama("Qwen2.5-32B", 5120, 40, 8, 64, 27648, _HF.format("Qwen/Qwen2.5-32B")),
    _llama("Qwen2.5-72B", 8192, 64, 8, 80, 29568, _HF.format("Qwen/Qwen2.5-72B")),
    # OLMo (Groeneveld et al. 2024, arXiv:2402.00838): SwiGLU, mlp_hidden_size is gate + up
    _llama("OLMo-1B", 2048, 16, 16, 16, 8192, "allenai/OLMo-1B config (mlp_ratio 8: 2 × 8192)"),
    _llama("OLMo-7B", 4096, 32, 32, 32, 11008,
           "allenai/OLMo-7B config (mlp_hidden_size 22016 = 2 × 11008)"),
    # ViT
    Published("ViT-B", "vit", 768, 12, 12, 3072, _VIT),
    Published("ViT-L", "vit", 1024, 16, 24, 4096, _VIT),
    Published("ViT-H", "vit", 1280, 16, 32, 5120, _VIT),
    Published("ViT-g", "vit", 1408, 16, 40, 6144,
              "Zhai et al. 2022 (arXiv:2106.04560), table 2 (MLP 6144 = 48/11 · 1408)"),
)


def build(p: Published, *, arch: str, vocab_size: int | None, seq_len: int,
          image_size: int = 224, patch_size: int = 16, num_labels: int = 1000) -> ModelShape:
    """``p``'s dimensions in the user's arch family, vocabulary and sequence length."""
    common = dict(hidden_size=p.hidden_size, num_attention_heads=p.num_attention_heads,
                  num_hidden_layers=p.num_hidden_layers, intermediate_size=p.intermediate_size,
                  head_dim=p.head_dim, name=p.name)
    if arch == "vit":
        return ModelShape.vit(**common, image_size=image_size, patch_size=patch_size,
                              num_labels=num_labels)
    if arch == "llama":
        return ModelShape.llama(**common, num_key_value_heads=p.kv_heads,
                                vocab_size=vocab_size, max_position_embeddings=seq_len)
    return ModelShape.gpt(**common, vocab_size=vocab_size,
                          max_position_embeddings=max(seq_len, 1024))


#: published shapes compared by default: at most this many ...
MAX_NEAREST = 3
#: ... within this factor of the budget
NEAR_FACTOR = 1.3


def nearest_published(*, arch: str, params: float, count: callable,  # type: ignore[valid-type]
                      **build_kw: object) -> list[tuple[list[Published], ModelShape, int]]:
    """The distinct published shapes of ``arch``'s family nearest ``params``.

    Returns [(rows with these dimensions, shape, its parameter count)], nearest first: up to
    MAX_NEAREST within NEAR_FACTOR of the budget (none when no published shape is that
    close: a comparison per parameter across a larger size gap says little). ``count`` is
    the parameter counter (count_params), ``build_kw`` go to :func:`build`."""
    if arch not in ("gpt", "llama", "vit"):
        raise InputError(f"arch: must be 'gpt', 'llama' or 'vit', got {arch!r}")
    groups: dict[tuple[int, ...], list[Published]] = {}
    for p in PUBLISHED:
        if p.family == arch:
            groups.setdefault(p.dims, []).append(p)
    scored = []
    for rows in groups.values():
        try:
            shape = build(rows[0], arch=arch, **build_kw)  # type: ignore[arg-type]
        except InputError:
            continue
        n = int(count(shape))
        scored.append((abs(math.log(n / params)), rows, shape, n))
    scored.sort(key=lambda t: (t[0], t[1][0].name))
    near = [t for t in scored if t[0] <= math.log(NEAR_FACTOR)][:MAX_NEAREST]
    return [(rows, shape, n) for _, rows, shape, n in near]
