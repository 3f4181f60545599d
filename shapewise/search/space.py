"""The shape search space shared by the recommendation and the exhaustive reference search.

A candidate is (hidden size h, head dim d, KV-head ratio r, FFN size f, layers L, vocabulary
padding multiple p). Heads follow as a = h / d and KV heads as g = a / r. The FFN is not
searched: it follows h by the arch's rule (:meth:`SearchSpace.ffn_for`). Layers are not free
either: for a given (h, d, r, p) only the L that keep the parameter count within ±tolerance
of the budget, inside the aspect band and a multiple of the pipeline stages are feasible.

A :class:`SearchSpace` is usually made from the user's
:class:`~shapewise.search.constraints.Constraints` by :func:`space_from` (defaults and
their sources are documented there); build one directly to search something else.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from shapewise.errors import InputError
from shapewise.model.params import count_params
from shapewise.model.shape import LIMITS, ModelShape
from shapewise.search.constraints import (
    DEFAULT_FFN_MULTIPLE,
    GELU_RATIO,
    SWIGLU_RATIO,
    VOCAB_MULTIPLES,
    Constraints,
)

Arch = Literal["gpt", "llama", "vit"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSpace:
    """Bounds and rules of the shape search (see the module docstring)."""

    arch: Arch = "gpt"
    head_dims: tuple[int, ...] = (64, 128)
    kv_ratios: tuple[int, ...] = (1,)
    """heads ÷ KV heads searched (Llama default (1, 2, 4, 8))"""
    heads_multiple: int = 1
    """heads and KV heads must be multiples of this (the largest TP degree planned)"""
    layers_multiple: int = 1
    """layers must be a multiple of this (the pipeline stages)"""
    ffn_ratio: float | None = None
    """FFN ÷ h before rounding; None: 4 (GELU) or 8/3 (SwiGLU)"""
    ffn_multiple: int | None = None
    """FFN rounded up to a multiple of this; None: 256 for SwiGLU, exact 4h for GELU"""
    vocab_multiples: tuple[int, ...] = VOCAB_MULTIPLES
    """vocabulary padding multiples tried (times the TP degree)"""
    min_layers: int = 2
    """two layers at least: induction heads, the circuit behind in-context copying, need
    two (Olsson et al. 2022, "In-context Learning and Induction Heads")"""
    max_layers: int = LIMITS["num_hidden_layers"]
    min_aspect: float = 64.0
    """smallest h / L (0: no bound)"""
    max_aspect: float = 128.0
    """largest h / L (inf: no bound)"""
    fixed: dict[str, int] = field(default_factory=dict)
    """pin any of hidden_size, head_dim, num_key_value_heads, intermediate_size,
    num_hidden_layers"""
    ffn_by_width: dict[int, int] = field(default_factory=dict)
    """FFN sizes chosen per width (:func:`shapewise.search.ffn.with_tuned_ffn`); the rule
    for widths not in it"""

    def __post_init__(self) -> None:
        if self.min_layers < 1 or self.max_layers < self.min_layers:
            raise InputError(f"min_layers/max_layers: need 1 <= {self.min_layers} <= "
                             f"{self.max_layers}")
        if not 0 <= self.min_aspect <= self.max_aspect or self.max_aspect <= 0:
            raise InputError(f"min_aspect/max_aspect: need 0 <= {self.min_aspect} <= "
                             f"{self.max_aspect}")
        if not self.head_dims or min(self.head_dims) < 1:
            raise InputError("head_dims: need at least one positive head dim")
        if not self.kv_ratios or min(self.kv_ratios) < 1:
            raise InputError("kv_ratios: need at least one positive ratio")
        if self.heads_multiple < 1 or self.layers_multiple < 1:
            raise InputError("heads_multiple/layers_multiple: must be positive")
        if not self.vocab_multiples or min(self.vocab_multiples) < 1:
            raise InputError("vocab_multiples: need at least one positive multiple")

    def ffn_for(self, h: int) -> int:
        """The FFN size the arch's rule gives width h (or the pinned one)."""
        if "intermediate_size" in self.fixed:
            return self.fixed["intermediate_size"]
        if h in self.ffn_by_width:
            return self.ffn_by_width[h]
        if self.arch == "llama":
            ratio = SWIGLU_RATIO if self.ffn_ratio is None else self.ffn_ratio
            m = self.ffn_multiple or DEFAULT_FFN_MULTIPLE
            return m * math.ceil(round(ratio * h, 6) / m)
        f = round((GELU_RATIO if self.ffn_ratio is None else self.ffn_ratio) * h)
        return self.ffn_multiple * math.ceil(f / self.ffn_multiple) if self.ffn_multiple else f


def space_from(c: Constraints, *, arch: str, params: float, tp: int) -> SearchSpace:
    """The search space the constraints ``c`` allow for ``arch`` at budget ``params``."""
    lo, hi = c.aspect_band(arch, params)
    fixed = {"num_hidden_layers": int(c.layers)} if c.layers is not None else {}
    if c.layers is not None:
        lo, hi = 0.0, math.inf  # a pinned depth replaces the band
    return SearchSpace(
        arch=arch, head_dims=tuple(sorted(set(c.head_dims))),  # type: ignore[arg-type]
        kv_ratios=c.ratios(arch), heads_multiple=c.tp_degree(params, tp),
        layers_multiple=c.stages(params), ffn_ratio=c.ffn_ratio, ffn_multiple=c.ffn_multiple,
        min_aspect=lo, max_aspect=hi, fixed=fixed)


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
    """Feasible (L_lo, L_hi), both multiples of ``sp.layers_multiple``, for the budget,
    depth and aspect bounds; lo > hi if none."""
    p1 = count_params(make_shape(pb, h, d, r, f, 1, pad))
    p2 = count_params(make_shape(pb, h, d, r, f, 2, pad))
    per_layer, base = p2 - p1, 2 * p1 - p2
    lo = math.ceil((pb.params * (1 - pb.tolerance) - base) / per_layer)
    hi = math.floor((pb.params * (1 + pb.tolerance) - base) / per_layer)
    lo = max(lo, sp.min_layers, math.ceil(h / sp.max_aspect))
    hi = min(hi, sp.max_layers)
    if sp.min_aspect > 0:
        hi = min(hi, math.floor(h / sp.min_aspect))
    if "num_hidden_layers" in sp.fixed:
        L = sp.fixed["num_hidden_layers"]
        lo, hi = max(lo, L), min(hi, L)
    m = sp.layers_multiple
    return m * math.ceil(lo / m), m * math.floor(hi / m)


def layers_in(pb: Problem, sp: SearchSpace, h: int, d: int, r: int, f: int, pad: int
              ) -> range:
    lo, hi = layer_range(pb, sp, h, d, r, f, pad)
    return range(lo, hi + 1, sp.layers_multiple)


def heads_unit(pb: Problem, sp: SearchSpace) -> int:
    """Heads (and KV heads) are multiples of this: the priced tp and the planned degree."""
    return math.lcm(pb.tp, sp.heads_multiple)


def hidden_sizes(pb: Problem, sp: SearchSpace) -> list[int]:
    """Widths a·d (a a multiple of the heads unit) that the budget could reach: a cheap
    pre-filter, the layer range decides."""
    if "hidden_size" in sp.fixed:
        return [sp.fixed["hidden_size"]]
    # a layer holds at least 10h² parameters (GPT/Llama alike; 12h² for MHA with a 4h MLP),
    # and L >= max(min_layers, pinned L, h / max_aspect)
    P = pb.params * (1 + pb.tolerance)
    l_min = max(sp.min_layers, sp.fixed.get("num_hidden_layers", 1))
    h_hi = math.sqrt(P / (10 * l_min))
    if math.isfinite(sp.max_aspect):
        h_hi = min(h_hi, (P * sp.max_aspect / 10) ** (1 / 3))
    h_hi = min(h_hi, LIMITS["hidden_size"])
    unit = heads_unit(pb, sp)
    dims = [sp.fixed["head_dim"]] if "head_dim" in sp.fixed else list(sp.head_dims)
    out: set[int] = set()
    for d in dims:
        out.update(range(unit * d, int(h_hi) + 1, unit * d))
    return sorted(out)


def ffn_sizes(pb: Problem, sp: SearchSpace, h: int) -> list[int]:
    """The FFN sizes searched at width h: one, by the arch's rule."""
    return [sp.ffn_for(h)]


def head_options(pb: Problem, sp: SearchSpace, h: int) -> list[tuple[int, int]]:
    """(head dim, kv ratio) pairs valid at width h: heads and KV heads multiples of the
    heads unit (tp and the planned TP degree), KV heads dividing the heads."""
    dims = [sp.fixed["head_dim"]] if "head_dim" in sp.fixed else list(sp.head_dims)
    unit = heads_unit(pb, sp)
    out = []
    for d in dims:
        if h % d:
            continue
        a = h // d
        if a % unit:
            continue
        ratios = sp.kv_ratios if pb.arch == "llama" else (1,)
        for r in ratios:
            if a % r:
                continue
            g = a // r
            if "num_key_value_heads" in sp.fixed and g != sp.fixed["num_key_value_heads"]:
                continue
            if g % unit:
                continue
            out.append((d, r))
    return out


def pad_options(pb: Problem, sp: SearchSpace) -> list[int]:
    if pb.arch == "vit":
        return [1]
    unit = heads_unit(pb, sp)
    return sorted({m * unit for m in sp.vocab_multiples})


def enumerate_space(pb: Problem, sp: SearchSpace
                    ) -> Iterator[tuple[int, int, int, int, int, int]]:
    """Every feasible (h, d, r, f, L, pad): the exhaustive search walks all of them."""
    for h in hidden_sizes(pb, sp):
        f = sp.ffn_for(h)
        if f % pb.tp:
            continue
        for d, r in head_options(pb, sp, h):
            for pad in pad_options(pb, sp):
                for L in layers_in(pb, sp, h, d, r, f, pad):
                    yield h, d, r, f, L, pad


def empty_reason(pb: Problem, sp: SearchSpace, widths: list[int]) -> str:
    """Why no shape meets the budget: the smallest and largest shape the constraints allow."""
    unit = heads_unit(pb, sp)
    if widths:
        h_s, h_b = widths[0], widths[-1]
        d_s, r_s = head_options(pb, sp, h_s)[0]
    else:
        d_s, r_s = min(sp.head_dims), 1
        h_s = h_b = unit * d_s
    pad = max(pad_options(pb, sp))
    m = sp.layers_multiple
    l_s = m * math.ceil(max(sp.min_layers, math.ceil(h_s / sp.max_aspect),
                            sp.fixed.get("num_hidden_layers", 1)) / m)
    smallest = count_params(make_shape(pb, h_s, d_s, r_s, sp.ffn_for(h_s), l_s, pad))
    band = (f"aspect {sp.min_aspect:g}-{sp.max_aspect:g}" if "num_hidden_layers" not in sp.fixed
            else f"layers {sp.fixed['num_hidden_layers']}")
    what = (f"heads multiples of {unit} (tp {pb.tp}, planned TP {sp.heads_multiple}), "
            f"head dims {sp.head_dims}, {band}, "
            f"vocab {pb.vocab_size if pb.arch != 'vit' else '-'}")
    if pb.params * (1 + pb.tolerance) < smallest:
        positions = max(pb.seq_len, 1024) * h_s if pb.arch == "gpt" else 0
        if positions and smallest - positions <= pb.params * (1 + pb.tolerance):
            return (f"seq_len: {pb.seq_len} learned positions alone take {positions:,} "
                    f"parameters at hidden {h_s}, {positions / pb.params:.0%} of the "
                    f"{pb.params:.3g} budget; shorten seq_len or use arch 'llama' (rotary)")
        return (f"params: {pb.params:.3g} is below the smallest shape the constraints allow "
                f"({smallest:,} parameters at hidden {h_s}, {l_s} layers; {what}): pass a "
                "smaller vocabulary, head dims or a wider aspect band")
    if widths:
        d_b, r_b = head_options(pb, sp, h_b)[0]
        l_b = sp.fixed.get("num_hidden_layers") or min(
            sp.max_layers, math.floor(h_b / sp.min_aspect) if sp.min_aspect > 0 else sp.max_layers)
        l_b = max(m, m * (l_b // m))
        largest = count_params(make_shape(pb, h_b, d_b, r_b, sp.ffn_for(h_b), l_b, pad))
        if pb.params * (1 - pb.tolerance) > largest:
            return (f"params: {pb.params:.3g} is above the largest shape the constraints "
                    f"allow ({largest:,} parameters at hidden {h_b}, {l_b} layers; {what})")
    return (f"params: no shape meets {pb.params:.3g} ± {pb.tolerance:.0%} within the "
            f"constraints ({what}; widths {h_s}-{h_b}): widen the tolerance, the aspect band "
            "or the head dims, or lower max_tp")
