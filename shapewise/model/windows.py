"""Sliding-window attention per layer, as Hugging Face configs state it.

A config says which layers window their attention with ``layer_types`` (one of
'sliding_attention' or 'full_attention' per layer) and how wide the window is with
``sliding_window`` (keys a query sees, itself included). When a config leaves either out,
transformers' config class fills it in; :data:`WINDOW_DEFAULTS` is that default per
``model_type``, read from the config classes of transformers 5.25
(``transformers/models/<family>/configuration_<family>.py``, ``__post_init__``):

=============  ==============  ==========================================================
model_type     sliding_window  layer_types when the config has none
=============  ==============  ==========================================================
gpt_oss        128             alternate, windowed first: layer i windowed when
                               (i + 1) % 2 (GptOssConfig)
gemma2         4096            the same alternation (Gemma2Config)
gemma3_text    4096            5 windowed of every 6: (i + 1) % sliding_window_pattern,
                               pattern 6 (Gemma3TextConfig)
cohere2        4096            3 of every 4: (i + 1) % sliding_window_pattern, pattern 4
                               (Cohere2Config)
mistral        4096            none: every layer windowed (MistralConfig has no
                               layer_types; Mistral-7B-v0.1 states 4096, v0.2 on null)
qwen2          4096            layer i windowed when i >= max_window_layers (28), and only
                               with use_sliding_window true (Qwen2Config)
=============  ==============  ==========================================================

Read by: gpt_oss (:mod:`shapewise.model.moe`), mistral, qwen2, gemma2, gemma3_text and
cohere2 (:mod:`shapewise.model.hf`), and Megatron-LM's ``--window-size`` /
``--window-attn-skip-freq`` (:func:`megatron_windows`).

Training memory does not change with a window: FlashAttention keeps Q, K, V and the output
of the whole sequence for the backward either way (``shapewise.model.memory``); only the
attention time and FLOPs do (``docs/cost-model.md``, "Sliding windows per layer").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shapewise.errors import InputError
from shapewise.model.validate import check_int

#: The per-layer attention kinds modelled, as Hugging Face configs spell them in
#: ``layer_types`` (transformers' ``ALLOWED_ATTN_LAYER_TYPES``; its others, such as
#: 'chunked_attention' or 'linear_attention', are not modelled).
LAYER_TYPES: tuple[str, ...] = ("sliding_attention", "full_attention")

#: model_type -> (default sliding_window, the layer_types rule when a config has none:
#: 'period N' windows layer i when (i + 1) % N, 'all' windows every layer, 'from K' windows
#: layers i >= K (K read from max_window_layers))
WINDOW_DEFAULTS: dict[str, tuple[int, str]] = {
    "gpt_oss": (128, "period 2"),
    "gemma2": (4096, "period 2"),
    "gemma3_text": (4096, "period 6"),
    "cohere2": (4096, "period 4"),
    "mistral": (4096, "all"),
    "qwen2": (4096, "from max_window_layers"),
}
#: Qwen2Config's max_window_layers default
QWEN2_MAX_WINDOW_LAYERS = 28


def hf_windows(cfg: Mapping[str, Any], model_type: str) -> dict[str, Any]:
    """``sliding_window`` and ``layer_types`` (ModelShape fields) of a decoded config of
    ``model_type``, with transformers' defaults for what it leaves out.

    A stated ``layer_types`` is kept as stated (ModelShape checks its entries and length and
    names the field). A window of null means full attention everywhere; ``layer_types`` is
    then only generated where the config states it. An all-windowed default (Mistral) stays
    ``layer_types`` None, which means the same.
    """
    default_window, rule = WINDOW_DEFAULTS[model_type]
    window = cfg.get("sliding_window", default_window)  # a stated null: no window
    stated = cfg.get("layer_types")
    if stated is not None:
        return {"sliding_window": window, "layer_types": stated}
    if window is None or rule == "all":
        return {"sliding_window": window, "layer_types": None}
    layers = cfg.get("num_hidden_layers")
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        return {"sliding_window": window, "layer_types": None}  # the reader names it
    if rule.startswith("period "):
        period = int(rule.split()[1])
        if model_type in ("gemma3_text", "cohere2"):  # the older configs' integer pattern
            period = check_int("sliding_window_pattern",
                               cfg.get("sliding_window_pattern", period))
        windowed = [bool((i + 1) % period) for i in range(layers)]
    else:  # from max_window_layers
        first = check_int("max_window_layers",
                          cfg.get("max_window_layers", QWEN2_MAX_WINDOW_LAYERS), minimum=0)
        windowed = [i >= first for i in range(layers)]
    types = tuple("sliding_attention" if w else "full_attention" for w in windowed)
    return {"sliding_window": window, "layer_types": types}


def check_layer_types(types: Any, layers: int, window: int | None) -> tuple[str, ...]:
    """``types`` (ModelShape.layer_types) as a tuple, or InputError naming layer_types: one
    of :data:`LAYER_TYPES` per layer, and a window for the windowed ones."""
    if isinstance(types, str | bytes) or not isinstance(types, list | tuple):
        raise InputError(f"layer_types: expected a list of {' or '.join(LAYER_TYPES)} "
                         f"per layer, got {types!r}")
    for i, kind in enumerate(types):
        if kind not in LAYER_TYPES:
            raise InputError(f"layer_types: entry {i} is {kind!r}; each layer must be one "
                             f"of {', '.join(LAYER_TYPES)} (other kinds are not modelled)")
    if len(types) != layers:
        raise InputError(f"layer_types: {len(types)} entries for num_hidden_layers {layers} "
                         f"(one per layer)")
    if window is None and "sliding_attention" in types:
        raise InputError("layer_types: 'sliding_attention' layers need sliding_window (the "
                         "window in keys), which is not set; for full attention everywhere "
                         "set layer_types to None too")
    return tuple(types)


def retile(types: tuple[str, ...], n: Any) -> tuple[str, ...]:
    """``types`` extended (or cut) to ``n`` layers by repeating its shortest period; left
    as it is (for ModelShape to refuse, naming layer_types) when it has none shorter than
    itself, or when ``n`` is no count."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        return types
    L = len(types)
    period = next(p for p in range(1, L + 1)
                  if all(types[i] == types[i % p] for i in range(L)))
    if period == L and n != L:
        return types
    return tuple(types[i % period] for i in range(n))


def megatron_windows(cfg: Mapping[str, Any], layers: int, where: str = "") -> dict[str, Any]:
    """``sliding_window`` and ``layer_types`` from Megatron-LM arguments, as Megatron-Core's
    ``is_layer_window_attention`` (megatron/core/transformer/utils.py) reads them.

    ``window_size``: (left, right) keys, "4096,0" on the command line; -1 on the left is an
    infinite window (none). Its mask keeps keys i − left .. i, so the window is left + 1 keys.
    A right window (look-ahead) is not causal and is refused. ``window_attn_skip_freq``: an
    integer N makes every N-th layer (1-based) full attention; a list (or "[1,1,1,0]*3",
    parsed, never evaluated) gives each layer, 1 for a window. Absent: every layer windowed.
    """
    size = cfg.get("window_size")
    if size is None:
        return {}
    if isinstance(size, str):
        size = [p for p in size.strip().strip("()[]").split(",") if p.strip()]
        try:
            size = [int(p) for p in size]
        except ValueError:
            raise InputError(f"{where}window_size: expected 'left,right' keys, got "
                             f"{cfg.get('window_size')!r}") from None
    if (not isinstance(size, list | tuple) or len(size) != 2
            or any(isinstance(x, bool) or not isinstance(x, int) for x in size)):
        raise InputError(f"{where}window_size: expected (left, right) keys, got {size!r}")
    left, right = size
    if right != 0:
        raise InputError(f"{where}window_size: a right window of {right} keys looks ahead "
                         f"(not causal), which is not modelled; use 0")
    if left < 0:  # -1: Megatron's infinite window
        return {}
    freq = cfg.get("window_attn_skip_freq")
    if freq is None:
        return {"sliding_window": left + 1}
    if isinstance(freq, str):
        m = re.fullmatch(r"\s*\[([\d,\s]*)\]\s*(?:\*\s*(\d+))?\s*", freq)
        if m:
            freq = [int(x) for x in m.group(1).split(",") if x.strip()] * int(m.group(2) or 1)
        elif freq.strip().isdigit():
            freq = int(freq)
    if isinstance(freq, int) and not isinstance(freq, bool) and freq >= 1:
        windowed = [(i + 1) % freq != 0 for i in range(layers)]
    elif isinstance(freq, list) and all(x in (0, 1) for x in freq):
        if len(freq) != layers:
            raise InputError(f"{where}window_attn_skip_freq: {len(freq)} entries for "
                             f"num_layers {layers} (one per layer)")
        windowed = [bool(x) for x in freq]
    else:
        raise InputError(f"{where}window_attn_skip_freq: expected a positive integer or a "
                         f"list of 1 (window) and 0 (full) per layer, got {freq!r}")
    types = tuple("sliding_attention" if w else "full_attention" for w in windowed)
    return {"sliding_window": left + 1, "layer_types": types}
