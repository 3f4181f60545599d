"""Read a model's shape, and the run settings a config states, from the files people have.

* a Hugging Face ``config.json`` (a path, a model folder, or the decoded dict): through
  :func:`shapewise.model.hf.from_hf_config`;
* Megatron-LM arguments (a dict, or a JSON file of one): ``--hidden-size`` and
  ``hidden_size`` spellings alike; the vocabulary is padded as Megatron pads it
  (``make_vocab_size_divisible_by`` × tp) and the SwiGLU FFN default follows Megatron;
* a nanoGPT config file (``config/train_gpt2.py``): plain ``name = value`` assignments,
  parsed with :mod:`ast` and **never executed**. A config file is data, not code: anything
  but a literal (numbers, strings, booleans, None, lists/tuples/dicts of them, and
  arithmetic on numbers such as ``5 * 8``) is refused with an error naming the line.

File type: ``.json`` (or a folder holding ``config.json``) is a Hugging Face config when it
has ``model_type``, Megatron arguments when it has Megatron's names (``num_layers``,
``ffn_hidden_size``, ``tensor_model_parallel_size``...); ``.py`` is a nanoGPT config.
Every error is an :class:`InputError` naming the file, and the line or the field.
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shapewise._io import read_text
from shapewise.errors import InputError
from shapewise.model.shape import ModelShape

Source = Literal["hf", "megatron", "nanogpt", "shape"]
SOURCE_NAMES: dict[str, str] = {"hf": "Hugging Face config", "megatron": "Megatron-LM arguments",
                                "nanogpt": "nanoGPT config", "shape": "ModelShape",
                                "module": "traced nn.Module"}
MAX_PY_BYTES = 1024 * 1024  # a nanoGPT config is a few hundred bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigInput:
    """A shape read from a config, with the run settings the config itself states."""

    shape: ModelShape
    source: Source
    path: str = ""
    tp: int | None = None
    """tensor-parallel size the config states (Megatron)"""
    pipeline_stages: int | None = None
    micro_batch: int | None = None
    seq_len: int | None = None
    notes: tuple[str, ...] = field(default=())
    """assumptions made while reading (defaults taken, padding applied)"""


# ------------------------------------------------------------------------ entry point
def read_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> ConfigInput:
    """The shape and stated run settings of a config file, folder or dict (see module doc)."""
    if isinstance(source, Mapping):
        return _read_mapping(source, where="")
    if not isinstance(source, str | os.PathLike):
        raise InputError(f"config: expected a path or a dict, got {type(source).__name__}")
    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".py":
        return read_nanogpt(path)
    if path.suffix != ".json":
        raise InputError(f"{path}: not a .json (Hugging Face / Megatron) or .py (nanoGPT) "
                         "config")
    from shapewise.model.hf import _read  # JSON with a size cap, NaN refused, errors named

    data = _read(path)
    if not isinstance(data, Mapping):
        raise InputError(f"{path}: config: expected a JSON object, got {type(data).__name__}")
    return _read_mapping(data, where=str(path))


def _read_mapping(data: Mapping[str, Any], *, where: str) -> ConfigInput:
    prefix = f"{where}: " if where else ""
    if "model_type" in data:
        from shapewise.model.hf import from_hf_config

        shape = from_hf_config(Path(where) if where else data)
        return ConfigInput(shape=shape, source="hf", path=where)
    if _looks_megatron(data):
        return read_megatron(data, where=where)
    raise InputError(
        f"{prefix}config: neither a Hugging Face config (no 'model_type') nor Megatron-LM "
        "arguments (no 'num_layers'/'ffn_hidden_size'/'tensor_model_parallel_size')"
    )


# --------------------------------------------------------------------------- Megatron
_MEGATRON_MARKERS = ("num_layers", "ffn_hidden_size", "tensor_model_parallel_size",
                     "pipeline_model_parallel_size", "padded_vocab_size", "seq_length",
                     "make_vocab_size_divisible_by", "num_query_groups", "micro_batch_size")


def _norm_key(key: Any) -> str:
    return str(key).lstrip("-").replace("-", "_")


def _looks_megatron(data: Mapping[str, Any]) -> bool:
    keys = {_norm_key(k) for k in data}
    return any(k in keys for k in _MEGATRON_MARKERS)


def _int(cfg: Mapping[str, Any], key: str, where: str, default: Any = None) -> Any:
    value = cfg.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{where}{key}: expected a positive integer, got {value!r}")
    return value


def _bool(cfg: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InputError(f"{where}{key}: expected true or false, got {value!r}")
    return value


def read_megatron(args: Mapping[str, Any], *, where: str = "") -> ConfigInput:
    """A shape from Megatron-LM arguments (``--hidden-size`` or ``hidden_size`` keys).

    Read: hidden_size, num_attention_heads, num_layers (required); ffn_hidden_size (default
    4h, or Megatron's SwiGLU rule int(8h/3 / 64)·64); group_query_attention +
    num_query_groups; swiglu; normalization (LayerNorm/RMSNorm); position_embedding_type
    (learned_absolute/rope/none); rotary_percent; untie_embeddings_and_output_weights;
    disable_bias_linear; add_qkv_bias; max_position_embeddings; padded_vocab_size, or
    vocab_size padded to make_vocab_size_divisible_by (128) × tp as Megatron does;
    seq_length, micro_batch_size, tensor_model_parallel_size, pipeline_model_parallel_size
    (run settings). Other arguments are ignored.
    """
    if not isinstance(args, Mapping):
        raise InputError(f"args: expected a mapping, got {type(args).__name__}")
    prefix = f"{where}: " if where else ""
    cfg = {_norm_key(k): v for k, v in args.items()}
    for key in ("hidden_size", "num_attention_heads", "num_layers"):
        if cfg.get(key) is None:
            raise InputError(f"{prefix}{key}: missing (Megatron-LM requires it)")
    h = _int(cfg, "hidden_size", prefix)
    a = _int(cfg, "num_attention_heads", prefix)
    L = _int(cfg, "num_layers", prefix)
    stated_tp = _int(cfg, "tensor_model_parallel_size", prefix)
    pp = _int(cfg, "pipeline_model_parallel_size", prefix)
    tp = stated_tp or 1
    swiglu = _bool(cfg, "swiglu", prefix, False)
    notes: list[str] = []
    kv = _int(cfg, "kv_channels", prefix)  # Megatron's head dim; absent: h / a
    if kv is None and h % a:
        raise InputError(f"{prefix}num_attention_heads: {a} does not divide hidden_size {h}")
    ffn = _int(cfg, "ffn_hidden_size", prefix)
    if ffn is None:
        ffn = int((4 * h * 2 / 3) / 64) * 64 if swiglu else 4 * h
        notes.append(f"ffn_hidden_size: {ffn} (Megatron's default"
                     + (" for SwiGLU, int(8h/3 / 64)·64)" if swiglu else ", 4h)"))
    g = a
    if _bool(cfg, "group_query_attention", prefix, False):
        g = _int(cfg, "num_query_groups", prefix, 1)
    padded = _int(cfg, "padded_vocab_size", prefix)
    if padded is None:
        vocab = _int(cfg, "vocab_size", prefix)
        if vocab is None:
            raise InputError(f"{prefix}vocab_size: missing (Megatron takes it from the "
                             "tokenizer; state vocab_size or padded_vocab_size)")
        divisible = _int(cfg, "make_vocab_size_divisible_by", prefix, 128)
        padded = -(-vocab // (divisible * tp)) * divisible * tp
        if padded != vocab:
            notes.append(f"vocab_size: {vocab} padded to {padded} as Megatron pads it "
                         f"(make_vocab_size_divisible_by {divisible} × tp {tp})")
    norm = cfg.get("normalization", "LayerNorm")
    norms = {"LayerNorm": "layernorm", "RMSNorm": "rmsnorm"}
    if norm not in norms:
        raise InputError(f"{prefix}normalization: must be LayerNorm or RMSNorm, got {norm!r}")
    pos = cfg.get("position_embedding_type", "learned_absolute")
    positions = {"learned_absolute": "learned", "rope": "rotary", "none": "none"}
    if pos not in positions:
        raise InputError(f"{prefix}position_embedding_type: must be one of "
                         f"{', '.join(positions)}, got {pos!r}")
    seq = _int(cfg, "seq_length", prefix)
    max_pos = _int(cfg, "max_position_embeddings", prefix, seq or 2048)
    bias = not _bool(cfg, "disable_bias_linear", prefix, False)
    rotary = cfg.get("rotary_percent", 1.0)
    fields: dict[str, Any] = {
        "arch": "llama" if swiglu else "gpt",
        "hidden_size": h, "num_attention_heads": a, "num_key_value_heads": g, "head_dim": kv,
        "num_hidden_layers": L, "intermediate_size": ffn, "vocab_size": padded,
        "max_position_embeddings": max_pos,
        "tie_word_embeddings": not _bool(cfg, "untie_embeddings_and_output_weights",
                                         prefix, False),
        "position_embedding": positions[pos], "norm": norms[norm],
        "activation": "swiglu" if swiglu else "gelu",
        "bias": bias, "qkv_bias": bias or _bool(cfg, "add_qkv_bias", prefix, False),
        "mlp_bias": bias, "rotary_pct": rotary, "name": str(cfg.get("name", "") or ""),
    }
    try:
        shape = ModelShape(**fields)
    except InputError as exc:
        message = str(exc)
        for ours, theirs in (("num_hidden_layers", "num_layers"),
                             ("intermediate_size", "ffn_hidden_size"),
                             ("num_key_value_heads", "num_query_groups"),
                             ("rotary_pct", "rotary_percent")):
            message = re.sub(rf"\b{ours}\b", theirs, message)
        raise InputError(prefix + message) from None
    return ConfigInput(shape=shape, source="megatron", path=where, tp=stated_tp,
                       pipeline_stages=pp,
                       micro_batch=_int(cfg, "micro_batch_size", prefix), seq_len=seq,
                       notes=tuple(notes))


# ---------------------------------------------------------------------------- nanoGPT
#: nanoGPT train.py's defaults, used for what a config file does not set
NANOGPT_DEFAULTS: dict[str, Any] = {
    "n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "bias": False,
    "batch_size": 12,
}
#: nanoGPT train.py: "defaulting to vocab_size of GPT-2 to 50304 (50257 rounded up for
#: efficiency)" when the data set has no meta.pkl
NANOGPT_VOCAB = 50304
#: GPT.from_pretrained: the OpenAI checkpoints (vocab 50257, 1024 positions, biases)
NANOGPT_PRETRAINED: dict[str, tuple[int, int, int]] = {
    "gpt2": (12, 12, 768), "gpt2-medium": (24, 16, 1024),
    "gpt2-large": (36, 20, 1280), "gpt2-xl": (48, 25, 1600),
}
_NANOGPT_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "init_from",
                 "batch_size", "bias")

_BINOPS: dict[type, Any] = {
    ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y,
    ast.Mult: lambda x, y: x * y, ast.Div: lambda x, y: x / y,
    ast.FloorDiv: lambda x, y: x // y, ast.Mod: lambda x, y: x % y,
    ast.Pow: lambda x, y: x**y,
}
_MAX_LITERAL = 2**64  # no config number is larger; bounds ** and * so a file cannot hang us


def _what(node: ast.AST) -> str:
    words = {ast.Import: "an import", ast.ImportFrom: "an import", ast.Call: "a call",
             ast.FunctionDef: "a function", ast.ClassDef: "a class", ast.If: "an if",
             ast.For: "a loop", ast.While: "a loop", ast.With: "a with-block",
             ast.Name: "a name", ast.Attribute: "an attribute", ast.AugAssign:
             "an augmented assignment", ast.Subscript: "a subscript", ast.Lambda: "a lambda"}
    return words.get(type(node), f"a {type(node).__name__} expression")


def _literal(node: ast.AST, where: str) -> Any:
    """The value of a literal expression; InputError naming the line for anything else."""
    line = getattr(node, "lineno", "?")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, int | float | str | bool) or node.value is None:
            return node.value
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand, where)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        x, y = _literal(node.left, where), _literal(node.right, where)
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (x, y))
        strings = isinstance(node.op, ast.Add) and isinstance(x, str) and isinstance(y, str)
        if numbers:
            if abs(x) > _MAX_LITERAL or abs(y) > _MAX_LITERAL or (
                    isinstance(node.op, ast.Pow) and abs(y) > 64):
                raise InputError(f"{where}:{line}: number too large for a config")
            try:
                value = _BINOPS[type(node.op)](x, y)
            except (ZeroDivisionError, OverflowError) as exc:
                raise InputError(f"{where}:{line}: {exc}") from None
            if isinstance(value, complex) or (isinstance(value, float)
                                              and not math.isfinite(value)):
                raise InputError(f"{where}:{line}: not a finite real number")
            return value
        if strings and len(x) + len(y) <= 4096:
            return x + y
    elif isinstance(node, ast.Tuple | ast.List):
        items = [_literal(e, where) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    elif isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise InputError(f"{where}:{line}: '**' in a dict is not a literal")
        return {_literal(k, where): _literal(v, where)  # type: ignore[arg-type]
                for k, v in zip(node.keys, node.values, strict=True)}
    raise InputError(
        f"{where}:{line}: only literal values are read (a config file is data and is never "
        f"executed); found {_what(node)}"
    )


def parse_assignments(text: str, *, where: str = "<config>") -> dict[str, Any]:
    """``name = literal`` lines of a Python-syntax config, as a dict; never executed.

    Module docstrings and comments are fine; any other statement (import, call, if, def...)
    or a non-literal value raises InputError naming the line.
    """
    try:
        tree = ast.parse(text, filename=where)
    except SyntaxError as exc:
        raise InputError(f"{where}:{exc.lineno or '?'}: invalid Python syntax ({exc.msg})"
                         ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise InputError(f"{where}: cannot parse ({type(exc).__name__})") from None
    values: dict[str, Any] = {}
    for i, stmt in enumerate(tree.body):
        if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                and isinstance(stmt.value.value, str):
            continue  # the docstring
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Assign):
            targets = stmt.targets
            value_node = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets = [stmt.target]
            value_node = stmt.value
        else:
            raise InputError(
                f"{where}:{stmt.lineno}: only `name = value` assignments are read (a config "
                f"file is data and is never executed); found {_what(stmt)}"
            )
        for target in targets:
            if not isinstance(target, ast.Name):
                raise InputError(f"{where}:{stmt.lineno}: assign to a plain name, found "
                                 f"{_what(target)}")
        try:
            value = _literal(value_node, where)
        except RecursionError:
            raise InputError(f"{where}:{stmt.lineno}: value nested too deeply") from None
        for target in targets:
            values[target.id] = value  # type: ignore[attr-defined]
    return values


def read_nanogpt(source: str | os.PathLike[str]) -> ConfigInput:
    """A shape from a nanoGPT config file (``config/train_gpt2.py`` style).

    What the file does not set takes nanoGPT train.py's default (12 layers, 12 heads, 768
    wide, block_size 1024, batch_size 12, bias False); the vocabulary is nanoGPT's 50304
    unless the file states ``vocab_size`` (nanoGPT itself reads it from the data set's
    meta.pkl). ``init_from = 'gpt2*'`` loads OpenAI's GPT-2 sizes, vocabulary 50257.
    Run settings: micro_batch = batch_size, seq_len = block_size.
    """
    path = Path(source)
    text = read_text(path, limit=MAX_PY_BYTES, what="a config file")
    where = str(path)
    values = parse_assignments(text, where=where)
    if not any(k in values for k in _NANOGPT_KEYS):
        raise InputError(f"{where}: no nanoGPT model settings (one of "
                         f"{', '.join(_NANOGPT_KEYS)})")
    cfg = {**NANOGPT_DEFAULTS, **values}
    notes: list[str] = []
    init_from = cfg.get("init_from", "scratch")
    if isinstance(init_from, str) and init_from in NANOGPT_PRETRAINED:
        L, a, h = NANOGPT_PRETRAINED[init_from]
        cfg.update(n_layer=L, n_head=a, n_embd=h, bias=True)
        vocab = 50257
        block = min(1024, cfg["block_size"]) if isinstance(cfg["block_size"], int) else 1024
        notes.append(f"init_from {init_from!r}: OpenAI GPT-2 sizes, vocab_size 50257")
    else:
        vocab = cfg.get("vocab_size", NANOGPT_VOCAB)
        block = cfg["block_size"]
        if "vocab_size" not in values:
            notes.append(f"vocab_size: {NANOGPT_VOCAB} (nanoGPT's default; the data set's "
                         "meta.pkl may set another: state vocab_size in the file)")
    names = {"hidden_size": "n_embd", "num_attention_heads": "n_head",
             "num_hidden_layers": "n_layer", "max_position_embeddings": "block_size"}
    try:
        shape = ModelShape.gpt(hidden_size=cfg["n_embd"], num_attention_heads=cfg["n_head"],
                               num_hidden_layers=cfg["n_layer"], vocab_size=vocab,
                               max_position_embeddings=block, bias=cfg["bias"],
                               name=path.stem)
    except InputError as exc:
        message = re.sub(r"\b(" + "|".join(names) + r")\b", lambda m: names[m.group(1)],
                         str(exc))
        raise InputError(f"{where}: {message}") from None
    batch = cfg["batch_size"]
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"{where}: batch_size: expected a positive integer, got {batch!r}")
    return ConfigInput(shape=shape, source="nanogpt", path=where, micro_batch=batch,
                       seq_len=block, notes=tuple(notes))
