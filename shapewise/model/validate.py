"""Checks of single fields, shared by every reader of shapes and run settings: each returns
the value or raises an :class:`~shapewise.errors.InputError` naming the field.
(:mod:`shapewise.model.shape` re-exports them.)"""

from __future__ import annotations

from typing import Any

from shapewise.errors import InputError

#: Bounds past any model that trains today; larger values are input errors. They keep every
#: search small and every estimate meaningful (check, estimate and recommend share them).
LIMITS: dict[str, int] = {
    "hidden_size": 2**20, "num_attention_heads": 2**16, "num_hidden_layers": 2**17,
    "intermediate_size": 2**24, "vocab_size": 2**28, "seq_len": 2**24,
    "micro_batch": 2**16, "tp": 2**12, "pipeline_stages": 2**12,
    "num_experts": 2**16,
}


def check_limit(name: str, value: int, *, key: str | None = None) -> int:
    """``value`` if it is within ``LIMITS[key or name]``, else InputError naming ``name``."""
    limit = LIMITS[key or name]
    if value > limit:
        raise InputError(f"{name}: {value} is beyond any model that trains (limit {limit})")
    return value


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else InputError naming ``name`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        word = "positive" if minimum == 1 else f"at least {minimum}"
        raise InputError(f"{name}: must be {word}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool, else InputError naming ``name`` (1 and "yes" refused)."""
    if not isinstance(value, bool):
        raise InputError(f"{name}: expected true or false, got {value!r}")
    return value


def choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InputError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
    return value
