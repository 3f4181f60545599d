"""The shape search space shared by the Optuna search and the exhaustive reference search.

A candidate is (hidden size h, head dim d, KV-head ratio r, FFN size f, layers L, vocabulary
padding multiple p). Heads follow as a = h / d and KV heads as g = a / r. Layers are not
free: for a given (h, d, r, f, p) only the L that keep the parameter count within
±tolerance of the budget are feasible, so the search picks L inside that range.

Defaults (all overridable through :class:`SearchSpace`):

* h in steps of 32 (so sizes that are not multiples of 64 stay possible and the cost model,
  not the grid, decides), head dims 32..256;
* aspect ratio h / L between 32 and 160 and L between 4 and 160: Kaplan et al. 2020
  ("Scaling Laws for Neural Language Models", fig. 5) found loss within a few percent over
  aspect ratios of roughly 20 to 200; published models sit at 64-128 (GPT-2 64, GPT-3
  2.7B 80, Llama-2-7B 128), so the default band stays inside both;
* GPT FFN = 4h (GELU, as GPT-2/NeoX); Llama FFN within ±8% of 8/3·h in steps of 32
  (co-design rule 6: search near 8/3·h, do not use it literally);
* KV-head ratios a/g in {1, 2, 4, 8} for Llama (GQA), 1 otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from shapewise.errors import InputError
from shapewise.model.params import count_params
from shapewise.model.shape import LIMITS, ModelShape

Arch = Literal["gpt", "llama", "vit"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSpace:
    """Bounds of the shape search (see the module docstring for the reasons)."""

    arch: Arch = "gpt"
    hidden_step: int = 32
    """h is searched in multiples of this"""
    head_dims: tuple[int, ...] = (32, 48, 64, 80, 96, 112, 128, 160, 192, 256)
    kv_ratios: tuple[int, ...] = (1,)
    """a/g ratios searched (Llama default (1, 2, 4, 8))"""
    ffn_range: tuple[float, float] = (0.92, 1.08)
    """Llama: FFN searched in [lo, hi] × 8/3·h"""
    ffn_step: int = 32
    vocab_multiples: tuple[int, ...] = (1, 8, 64, 128)
    """padding multiples tried (times tp)"""
    min_layers: int = 4
    max_layers: int = 160
    min_aspect: float = 32.0
    """smallest h / L"""
    max_aspect: float = 160.0
    """largest h / L"""
    fixed: dict[str, int] = field(default_factory=dict)
    """pin any of hidden_size, head_dim, num_key_value_heads, intermediate_size,
    num_hidden_layers"""

    def __post_init__(self) -> None:
        if self.min_layers < 1 or self.max_layers < self.min_layers:
            raise InputError(f"min_layers/max_layers: need 1 <= {self.min_layers} <= "
                             f"{self.max_layers}")
        if not 0 < self.min_aspect <= self.max_aspect:
            raise InputError(f"min_aspect/max_aspect: need 0 < {self.min_aspect} <= "
                             f"{self.max_aspect}")
        if not self.head_dims or min(self.head_dims) < 1:
            raise InputError("head_dims: need at least one positive head dim")
        if self.hidden_step < 1 or self.ffn_step < 1:
            raise InputError("hidden_step/ffn_step: must be positive")


@dataclass(frozen=True, slots=True)
class Problem:
    """What the user asked for."""

    params: float
    tolerance: float
    arch: Arch
    vocab_size: int
    seq_len: int
    tp: int
    image_size: int = 224
    patch_size: int = 16
    num_labels: int = 1000


def make_shape(pb: Problem, h: int, d: int, r: int, f: int, L: int, pad: int) -> ModelShape:
    a = h // d
    g = a // r
    if pb.arch == "vit":
        return ModelShape.vit(hidden_size=h, num_attention_heads=a, num_hidden_layers=L,
                              intermediate_size=f, image_size=pb.image_size,
                              patch_size=pb.patch_size, num_labels=pb.num_labels)
    v = -(-pb.vocab_size // pad) * pad
    if pb.arch == "llama":
        return ModelShape.llama(hidden_size=h, num_attention_heads=a, num_key_value_heads=g,
                                num_hidden_layers=L, intermediate_size=f, vocab_size=v,
                                max_position_embeddings=pb.seq_len)
    return ModelShape.gpt(hidden_size=h, num_attention_heads=a, num_hidden_layers=L,
                          intermediate_size=f, vocab_size=v,
                          max_position_embeddings=max(pb.seq_len, 1024))


def layer_range(pb: Problem, sp: SearchSpace, h: int, d: int, r: int, f: int, pad: int
                ) -> tuple[int, int]:
    """Feasible (L_lo, L_hi) for the budget, depth and aspect bounds; lo > hi if none."""
    p1 = count_params(make_shape(pb, h, d, r, f, 1, pad))
    p2 = count_params(make_shape(pb, h, d, r, f, 2, pad))
    per_layer, base = p2 - p1, 2 * p1 - p2
    lo = math.ceil((pb.params * (1 - pb.tolerance) - base) / per_layer)
    hi = math.floor((pb.params * (1 + pb.tolerance) - base) / per_layer)
    lo = max(lo, sp.min_layers, math.ceil(h / sp.max_aspect))
    hi = min(hi, sp.max_layers, math.floor(h / sp.min_aspect))
    if "num_hidden_layers" in sp.fixed:
        L = sp.fixed["num_hidden_layers"]
        lo, hi = max(lo, L), min(hi, L)
    return lo, hi


def hidden_sizes(pb: Problem, sp: SearchSpace) -> list[int]:
    """Widths whose aspect band can hold the budget (a loose, cheap pre-filter)."""
    if "hidden_size" in sp.fixed:
        return [sp.fixed["hidden_size"]]
    # a layer holds about 12h² parameters (GPT/Llama alike); with L in [h/max_aspect,
    # h/min_aspect], 12h³/max_aspect <= P <= 12h³/min_aspect + embeddings
    h_lo = (pb.params * (1 - pb.tolerance) * sp.min_aspect / 16) ** (1 / 3)
    h_hi = (pb.params * (1 + pb.tolerance) * sp.max_aspect / 10) ** (1 / 3)
    step = sp.hidden_step
    h_hi = min(h_hi, LIMITS["hidden_size"])  # past it no shape is valid (and the list huge)
    start = max(step, int(min(h_lo, h_hi) // step) * step)
    return list(range(start, int(h_hi) + step, step))


def ffn_sizes(pb: Problem, sp: SearchSpace, h: int) -> list[int]:
    if "intermediate_size" in sp.fixed:
        return [sp.fixed["intermediate_size"]]
    if pb.arch != "llama":
        return [4 * h]
    lo, hi = sp.ffn_range
    c = 8 * h / 3
    step = sp.ffn_step
    return list(range(math.ceil(c * lo / step) * step, int(c * hi) + 1, step)) or [
        round(c / step) * step]


def head_options(pb: Problem, sp: SearchSpace, h: int) -> list[tuple[int, int]]:
    """(head dim, kv ratio) pairs valid for width h under tensor parallelism."""
    dims = [sp.fixed["head_dim"]] if "head_dim" in sp.fixed else list(sp.head_dims)
    out = []
    for d in dims:
        if h % d:
            continue
        a = h // d
        if a % pb.tp:
            continue
        for r in sp.kv_ratios:
            if a % r:
                continue
            g = a // r
            if "num_key_value_heads" in sp.fixed and g != sp.fixed["num_key_value_heads"]:
                continue
            if g % pb.tp:
                continue
            out.append((d, r))
    return out


def pad_options(pb: Problem, sp: SearchSpace) -> list[int]:
    if pb.arch == "vit":
        return [1]
    return sorted({m * pb.tp for m in sp.vocab_multiples})


def enumerate_space(pb: Problem, sp: SearchSpace
                    ) -> Iterator[tuple[int, int, int, int, int, int]]:
    """Every feasible (h, d, r, f, L, pad): the exhaustive search walks all of them."""
    for h in hidden_sizes(pb, sp):
        if h % pb.tp:
            continue
        for d, r in head_options(pb, sp, h):
            for f in ffn_sizes(pb, sp, h):
                if f % pb.tp:
                    continue
                for pad in pad_options(pb, sp):
                    lo, hi = layer_range(pb, sp, h, d, r, f, pad)
                    for L in range(lo, hi + 1):
                        yield h, d, r, f, L, pad
