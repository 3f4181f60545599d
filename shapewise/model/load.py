"""One way in: :func:`load_shape` reads a model's shape from anything a user has.

=======================================  ============================================
input                                    read by
=======================================  ============================================
Hugging Face ``config.json`` (a file, a  :func:`shapewise.model.hf.hf_shape`
model folder, or the decoded dict)
Megatron-LM arguments (a dict, or a      :func:`shapewise.model.megatron.read_megatron`
JSON file of one)
nanoGPT ``.py`` config (parsed, never    :func:`shapewise.model.nanogpt.read_nanogpt`
executed)
a preset name (``llama-2-7b``)           :func:`shapewise.model.presets.get_preset`
a :class:`ModelShape`, or its            here
``to_dict()``
``shapewise recommend --json`` (the      here (the best shape, with the settings it
whole document, ``best``, or             was searched at)
``best.shape``)
``shapewise estimate --json``            here (the shape, with its settings)
=======================================  ============================================

A JSON file is told by its content: ``model_type`` (Hugging Face), ``best`` (recommend),
``shape`` (estimate, or one recommend candidate), ``arch`` (a ModelShape), Megatron's
argument names. What a shapewise document states about the run (sequence length,
micro-batch, tp, GPU, dtype) comes back with the shape, so ``check`` of a recommended
shape runs at the settings it was recommended for unless told otherwise.

>>> load_shape("gpt2").shape.vocab_size
50257
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shapewise._io import read_json
from shapewise.errors import InputError
from shapewise.model.hf import MAX_CONFIG_BYTES, config_name, hf_shape
from shapewise.model.loaded import LoadedShape, did_you_mean
from shapewise.model.megatron import looks_megatron, read_megatron
from shapewise.model.nanogpt import read_nanogpt
from shapewise.model.presets import PRESETS, get_preset
from shapewise.model.shape import ModelShape

ShapeInput = ModelShape | Mapping[str, Any] | str | os.PathLike[str]

ACCEPTED = ("a Hugging Face config.json or model folder, Megatron-LM arguments (.json), a "
            "nanoGPT .py config, a preset name, or the JSON of 'shapewise recommend --json', "
            "'shapewise estimate --json' or ModelShape.to_dict()")


def load_shape(source: ShapeInput) -> LoadedShape:
    """The shape ``source`` describes, with the run settings it states (see module doc).

    ``source``: a :class:`ModelShape`; a dict (a decoded config or document); a path to a
    ``.json`` file, a model folder or a nanoGPT ``.py`` file; or a preset name (a string
    that is no file). Errors are :class:`InputError` naming the file and the field.
    """
    if isinstance(source, ModelShape):
        return LoadedShape(shape=source, source="shape", path="")
    if isinstance(source, Mapping):
        return read_mapping(source)
    if not isinstance(source, str | os.PathLike):
        raise InputError(f"config: expected a path, a preset name, a dict or a ModelShape, "
                         f"got {type(source).__name__}")
    path = Path(source)
    if isinstance(source, str) and _is_name(source) and not path.exists():
        return _preset(source)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".py":
        return read_nanogpt(path)
    if path.suffix != ".json":
        raise InputError(f"{path}: not a .json (Hugging Face / Megatron / shapewise) or .py "
                         "(nanoGPT) config")
    data = read_json(path, limit=MAX_CONFIG_BYTES, what="a config.json")
    return read_mapping(data, path=str(path), default_name=config_name(path))


def _is_name(text: str) -> bool:
    """A bare name (no folder, no file suffix) may be a preset."""
    return not any(sep in text for sep in ("/", os.sep)) and Path(text).suffix not in (
        ".json", ".py")


def _preset(name: str) -> LoadedShape:
    try:
        return LoadedShape(shape=get_preset(name), source="preset", path=name)
    except InputError:
        close = did_you_mean(name.strip().lower(), PRESETS, cutoff=0.6)
        hint = f" (did you mean {close!r}?)" if close else ""
        raise InputError(f"{name}: no such file, and not a preset{hint}; presets: "
                         f"{', '.join(sorted(PRESETS))}") from None


def read_mapping(data: Any, *, path: str = "", default_name: str = "") -> LoadedShape:
    """The shape of a decoded config or shapewise document (``path``: where it came from)."""
    where = f"{path}: " if path else ""
    if not isinstance(data, Mapping):
        raise InputError(f"{where}config: expected a JSON object, got {type(data).__name__}")
    if "model_type" in data:
        return hf_shape(data, path=path, default_name=default_name)
    if isinstance(data.get("best"), Mapping):
        return _recommend(data, where=where, path=path)
    if isinstance(data.get("shape"), Mapping):
        return _with_shape(data, where=where, path=path)
    if "arch" in data:
        return LoadedShape(shape=shape_from_dict(data, where=where), source="shape", path=path)
    if looks_megatron(data):
        return read_megatron(data, where=path)
    raise InputError(f"{where}config: not a shape shapewise can read: neither a Hugging Face "
                     "config (no 'model_type'), a shapewise document (no 'best', 'shape' or "
                     "'arch') nor Megatron-LM arguments (no 'num_layers'/'ffn_hidden_size'/"
                     "'tensor_model_parallel_size'); expected " + ACCEPTED)


def shape_from_dict(data: Mapping[str, Any], *, where: str = "", key: str = "") -> ModelShape:
    """:meth:`ModelShape.from_dict`, with errors that name the file, the key path
    (``best.shape.``) and, for an unknown field, the field it was probably meant to be."""
    at = f"{where}{key}"
    if not isinstance(data, Mapping):
        raise InputError(f"{at or 'shape'}: expected a mapping of fields, got "
                         f"{type(data).__name__}")
    fields = [f.name for f in dataclasses.fields(ModelShape)]
    for name in data:
        if name not in fields:
            meant = did_you_mean(str(name), [f for f in fields if f not in data])
            hint = f"; did you mean {meant}?" if meant else ""
            raise InputError(f"{at}{name}: not a ModelShape field{hint}")
    try:
        return ModelShape.from_dict(data)
    except InputError as exc:
        raise InputError(f"{at}{exc}") from None


def _setting(doc: Mapping[str, Any], name: str, where: str) -> int | None:
    """A positive integer setting a document states (None when it states none)."""
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{where}{name}: expected a positive integer, got {value!r}")
    return value


def _text(doc: Mapping[str, Any], name: str) -> str | None:
    value = doc.get(name)
    return value if isinstance(value, str) and value else None


def _recommend(doc: Mapping[str, Any], *, where: str, path: str) -> LoadedShape:
    """``recommend --json``: the best shape, at the settings it was searched at."""
    best = doc["best"]
    shape = shape_from_dict(best.get("shape", best), where=where,
                            key="best.shape." if "shape" in best else "best.")
    inputs = doc.get("inputs")
    inputs = inputs if isinstance(inputs, Mapping) else {}
    at = f"{where}inputs."
    return LoadedShape(
        shape=shape, source="recommend", path=path, tp=_setting(inputs, "tp", at),
        pipeline_stages=(_setting(inputs, "pipeline_stages", at)
                         or _setting(inputs, "pp", at)),
        micro_batch=_setting(inputs, "micro_batch", at), seq_len=_setting(inputs, "seq_len", at),
        gpu=_text(doc, "gpu"), dtype=_text(inputs, "dtype"),
        notes=("recommend --json: its best shape, at the settings it was searched at",),
    )


def _with_shape(doc: Mapping[str, Any], *, where: str, path: str) -> LoadedShape:
    """``estimate --json`` (the shape with its settings) or one recommend candidate."""
    shape = shape_from_dict(doc["shape"], where=where, key="shape.")
    estimate = "breakdown" in doc or ("step_time_s" in doc and "gpu" in doc)
    plan = doc.get("plan")  # an estimate of a training plan states its pipeline stages there
    plan = plan if isinstance(plan, Mapping) else {}
    return LoadedShape(
        shape=shape, source="estimate" if estimate else "recommend", path=path,
        tp=_setting(doc, "tp", where),
        pipeline_stages=(_setting(doc, "pipeline_stages", where)
                         or _setting(plan, "pp", f"{where}plan.")),
        micro_batch=_setting(doc, "micro_batch", where), seq_len=_setting(doc, "seq_len", where),
        gpu=_text(doc, "gpu"), dtype=_text(doc, "dtype"),
    )
