"""Profile schema as data: each field of a profile dataclass declares how it is read.

A field is declared with :func:`schema` instead of ``dataclasses.field``: its metadata holds
a *parser* (which validates the raw JSON value and returns the field's value), how the
value is written back (``dump``), and whether it is a datasheet fact that must cite a
source. :func:`parse_fields`, :func:`to_dict` and the set of known keys all derive from
those declarations, so adding a field to a profile is one line, e.g. in
``shapewise.hardware.catalog.GPU``::

    sustained_clock: float | None = schema(number(at_most=1.0), default=None)

A field without a default is required; a field whose default is None may be absent or JSON
null, and is left out of :func:`to_dict` when None (``omit_empty=True``: when empty, too).
Parsers compose: ``named(named(number()))`` reads ``{"cudnn": {"fwd_efficiency": 0.7}}``.
Every error names the file and the dotted field (``InputError``, a ``ValueError``); strict
parsing: unknown keys, mistyped, non-finite or out-of-range values are errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shapewise.errors import InputError


def short(value: Any, limit: int = 60) -> str:
    """repr() cut to ``limit`` characters: error messages quote hostile values too."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class Checker:
    """Names the file and field in every error while a profile is read."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field_name: str, problem: str) -> InputError:
        return InputError(f"{self.where}: field '{field_name}' {problem}")


#: a field's parser: (raw JSON value, checker, dotted field name) -> validated value
Parser = Callable[[Any, Checker, str], Any]


def same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class FieldSchema:
    """How one profile field is read from JSON and written back to it."""

    parse: Parser
    """validates the raw JSON value and returns the field's value"""
    dump: Callable[[Any], Any] = same
    """the field's value as JSON-ready data (the inverse of ``parse``)"""
    sourced: bool = False
    """a datasheet fact: its key must appear in the profile's ``sources`` when present"""
    omit_empty: bool = False
    """left out of the JSON when empty (as well as when None)"""


def schema(parse: Parser, *, dump: Callable[[Any], Any] = same, sourced: bool = False,
           omit_empty: bool = False, **field_kwargs: Any) -> Any:
    """A dataclass ``field`` that is also a profile field (see the comment above)."""
    return field(metadata={"schema": FieldSchema(parse, dump, sourced, omit_empty)},
                 **field_kwargs)


def number(*, allow_zero: bool = False, at_most: float | None = None) -> Parser:
    """A finite, non-negative number (positive unless ``allow_zero``), at most ``at_most``."""

    def parse(value: Any, check: Checker, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise check.fail(name, f"must be a number, got {type(value).__name__}")
        if isinstance(value, int) and abs(value) > 10**15:  # float() overflows past ~1e308
            raise check.fail(name, "must be a finite number of sensible size, got an integer "
                             f"of {len(str(abs(value)))} digits")
        number = float(value)
        if not math.isfinite(number) or abs(number) > 1e15:
            raise check.fail(name, f"must be a finite number of sensible size, "
                             f"got {short(value)}")
        if number < 0 or (number == 0 and not allow_zero):
            raise check.fail(name, f"must be {'non-negative' if allow_zero else 'positive'}, "
                             f"got {number:g}")
        if at_most is not None and number > at_most:
            raise check.fail(name, f"must be at most {at_most:g}, got {number:g}")
        return number

    return parse


def integer(value: Any, check: Checker, name: str) -> int:
    """A positive integer (a JSON float such as 32.0 is refused)."""
    read = number()(value, check, name)
    if read != int(read) or isinstance(value, float):
        raise check.fail(name, f"must be an integer, got {short(value)}")
    return int(read)


def string(*, choices: Iterable[str] | None = None, pattern: str | None = None) -> Parser:
    def parse(value: Any, check: Checker, name: str) -> str:
        if not isinstance(value, str):
            raise check.fail(name, f"must be a string, got {type(value).__name__}")
        if choices is not None and value not in choices:
            raise check.fail(name, f"must be one of {', '.join(choices)}, "
                             f"got {short(value)!r}")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise check.fail(name, f"must match {pattern}, got {short(value)!r}")
        return value

    return parse


def json_object(value: Any, check: Checker, name: str) -> dict:
    """A JSON object (a dict), as it is."""
    if not isinstance(value, dict):
        raise check.fail(name, f"must be an object, got {type(value).__name__}")
    return value


def named(parse_item: Parser) -> Parser:
    """{name: item}, each item read by ``parse_item`` (e.g. per attention backend)."""

    def parse(value: Any, check: Checker, name: str) -> dict[str, Any]:
        return {str(key): parse_item(item, check, f"{name}.{short(key)}")
                for key, item in json_object(value, check, name).items()}

    return parse


def citations(value: Any, check: Checker, name: str) -> dict[str, str]:
    for key, text in json_object(value, check, name).items():
        if not isinstance(text, str) or not text.strip():
            raise check.fail(f"{name}.{short(key)}", "must be a non-empty string")
    return dict(value)


def plain_json(value: Any, check: Checker, name: str) -> dict:
    """Free-form, but it must survive print_json (finite numbers, plain JSON data)."""
    json_object(value, check, name)
    try:
        json.dumps(value, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        raise check.fail(name, "must hold plain JSON data with finite numbers") from None
    return value


def schema_fields(cls: type) -> list[tuple[str, FieldSchema, bool]]:
    """(name, schema, required) of each profile field of ``cls``, in declaration order."""
    return [(f.name, f.metadata["schema"],
             f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(cls) if "schema" in f.metadata]


def nullable(cls: type) -> set[str]:
    """Fields whose default is None: JSON null or absence both mean "not given"."""
    return {f.name for f in dataclasses.fields(cls) if f.default is None}


def parse_fields(cls: type, raw: Any, check: Checker, *, prefix: str = "") -> dict[str, Any]:
    """Keyword arguments of ``cls`` read from the JSON object ``raw``, each validated."""
    specs = schema_fields(cls)
    if not isinstance(raw, dict):
        raise check.fail(prefix.rstrip("."), f"must be an object, got {type(raw).__name__}")
    known = {name for name, _, _ in specs}
    unknown = [key for key in raw if key not in known]
    if unknown:
        raise check.fail(prefix + short(sorted(unknown, key=str)[0]),
                         "is not a known field (typo?)")
    optional = nullable(cls)
    kwargs: dict[str, Any] = {}
    for name, spec, required in specs:
        if name not in raw or (raw[name] is None and name in optional):
            if required:
                raise check.fail(prefix + name, "is missing")
            continue  # the dataclass default
        kwargs[name] = spec.parse(raw[name], check, prefix + name)
    return kwargs


def to_dict(obj: Any) -> dict[str, Any]:
    """The profile fields of a GPU or Calibration as JSON-ready data; None is left out."""
    out = {}
    for name, spec, _ in schema_fields(type(obj)):
        value = getattr(obj, name)
        if value is not None and not (spec.omit_empty and not value):
            out[name] = spec.dump(value)
    return out


def nested(cls: type) -> Parser:
    """A JSON object read as the dataclass ``cls`` (its fields declared with ``schema``)."""

    def parse(value: Any, check: Checker, name: str) -> Any:
        return cls(**parse_fields(cls, value, check, prefix=name + "."))

    return parse


def version(expected: int) -> Parser:
    """A document's ``schema_version``: an integer equal to ``expected``."""

    def parse(value: Any, check: Checker, name: str) -> int:
        found = integer(value, check, name)
        if found != expected:
            raise check.fail(name, f"is {found}; this shapewise reads {expected}")
        return found

    return parse


def parse_document(cls: type, raw: Any, check: Checker, *, what: str) -> dict[str, Any]:
    """:func:`parse_fields` of a whole JSON document (``what``: 'a profile', 'a system').

    Its ``schema_version`` is read first, so that a file of another version fails on its
    version rather than on the fields that version changed.
    """
    if not isinstance(raw, dict):
        raise InputError(f"{check.where}: {what} must be a JSON object, got "
                         f"{type(raw).__name__}")
    specs = {name: spec for name, spec, _ in schema_fields(cls)}
    if "schema_version" in specs:
        if "schema_version" not in raw:
            raise check.fail("schema_version", "is missing")
        specs["schema_version"].parse(raw["schema_version"], check, "schema_version")
    return parse_fields(cls, raw, check)
