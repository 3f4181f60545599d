"""The config readers of ``check``, now :func:`shapewise.model.load.load_shape`'s.

``read_config`` is :func:`~shapewise.model.load.load_shape` and ``ConfigInput`` its
:class:`~shapewise.model.loaded.LoadedShape`: Hugging Face ``config.json`` files, Megatron-LM
arguments, nanoGPT ``.py`` files (parsed, never executed), presets, and every shape document
shapewise writes. The Megatron and nanoGPT readers live in :mod:`shapewise.model.megatron`
and :mod:`shapewise.model.nanogpt`; they are re-exported here for the callers that know
them by this module.
"""

from __future__ import annotations

from shapewise.model.load import load_shape as read_config
from shapewise.model.loaded import SOURCE_NAMES, LoadedShape, Source
from shapewise.model.megatron import looks_megatron, read_megatron
from shapewise.model.nanogpt import (
    MAX_PY_BYTES,
    NANOGPT_DEFAULTS,
    NANOGPT_PRETRAINED,
    NANOGPT_VOCAB,
    parse_assignments,
    read_nanogpt,
)

ConfigInput = LoadedShape

__all__ = [
    "MAX_PY_BYTES", "NANOGPT_DEFAULTS", "NANOGPT_PRETRAINED", "NANOGPT_VOCAB", "SOURCE_NAMES",
    "ConfigInput", "LoadedShape", "Source", "looks_megatron", "parse_assignments",
    "read_config", "read_megatron", "read_nanogpt",
]
