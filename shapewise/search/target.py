"""The target a shape search prices under: built once at the search's entry point from
``target=`` or the fields it takes one by one (:func:`shapewise.plan.target_from`), the
sequence length settled by the rule every command shares, and each shape's copy of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from shapewise.model.run_defaults import default_seq_len
from shapewise.model.shape import ModelShape
from shapewise.plan import Target, target_from

#: the fields of a Target recommend_shape takes one by one instead of ``target=`` (the
#: keywords of earlier versions; make_target builds the target from them)
TARGET_KEYWORDS = ("gpu", "profile", "dtype", "seq_len", "micro_batch", "tp", "recompute",
                   "n_gpus", "global_batch", "recipe")
#: the target's settings beyond gpu, dtype, seq_len, micro-batch and tp that it prices
PRICES = ("recompute", "n_gpus", "global_batch", "recipe")


def search_target(target: Target | None, fields: dict[str, Any], *, by: str,
                  takes: tuple[str, ...] = TARGET_KEYWORDS, prices: tuple[str, ...] = PRICES
                  ) -> Target:
    """The target a shape search prices under: ``target=`` or the keywords it ``takes`` one
    by one, built once (:func:`shapewise.plan.target_from`), with no setting beyond those
    it ``prices``, the sequence length settled by the rule every command shares (no model
    yet: 4096)."""
    t = target_from(target, fields, takes=takes, by=by)
    t.require_only(prices, by=by)
    return t if t.seq_len is not None else replace(t, seq_len=default_seq_len()[0])


def priced_at(target: Target, seq: int) -> Callable[[ModelShape], Target]:
    """The target each shape is priced under: the search's sequence length ``seq``, or a
    ViT's own tokens (fixed by its image)."""
    text, vit = replace(target, seq_len=seq), replace(target, seq_len=None)
    return lambda shape: vit if shape.arch == "vit" else text
