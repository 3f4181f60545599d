"""Read a model's shape, and the run settings it states, from a nanoGPT config file.

``config/train_gpt2.py`` style: plain ``name = value`` assignments, parsed with :mod:`ast`
and **never executed**. A config file is data, not code: anything but a literal (numbers,
strings, booleans, None, lists/tuples/dicts of them, and arithmetic on numbers such as
``5 * 8``) is refused with an error naming the line.
"""

from __future__ import annotations

import ast
import math
import os
import re
from pathlib import Path
from typing import Any

from shapewise._io import read_text
from shapewise.errors import InputError
from shapewise.model.loaded import LoadedShape, did_you_mean
from shapewise.model.shape import ModelShape

MAX_PY_BYTES = 1024 * 1024  # a nanoGPT config is a few hundred bytes

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


def read_nanogpt(source: str | os.PathLike[str]) -> LoadedShape:
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
    # a misspelt setting is ignored by nanoGPT too (its configurator exec()s the file and
    # train.py never reads the name): say so, with the setting it was probably meant for
    typos = {name: meant for name in values if name not in _NANOGPT_KEYS
             and (meant := did_you_mean(name, [k for k in _NANOGPT_KEYS if k not in values]))}
    if not any(k in values for k in _NANOGPT_KEYS):
        hint = "".join(f"; {name!r}: did you mean {meant}?" for name, meant in typos.items())
        raise InputError(f"{where}: no nanoGPT model settings (one of "
                         f"{', '.join(_NANOGPT_KEYS)}){hint}")
    cfg = {**NANOGPT_DEFAULTS, **values}
    notes: list[str] = [f"{name}: not a setting nanoGPT reads; did you mean {meant}? ({meant} "
                        "took its default)" for name, meant in typos.items()]
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
    return LoadedShape(shape=shape, source="nanogpt", path=where, micro_batch=batch,
                       seq_len=block, notes=tuple(notes))
