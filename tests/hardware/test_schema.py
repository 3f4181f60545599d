"""The profile schema as data: one declaration per field drives parsing, checks and
to_dict, for GPU profiles (shapewise.hardware.catalog) as for any dataclass."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest

from shapewise.errors import InputError
from shapewise.hardware import catalog, schema
from shapewise.hardware.catalog import GPU, gpu_to_dict, parse_profile

PROFILES = Path(str(resources.files("shapewise.profiles")))


def _h100_raw() -> dict:
    return json.loads((PROFILES / "h100-sxm.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------- the schema as data
def test_known_keys_parsing_and_to_dict_come_from_one_field_list() -> None:
    """The profile keys are the GPU fields declared with ``schema``; nothing else lists them."""
    declared = [f.name for f in dataclasses.fields(GPU) if "schema" in f.metadata]
    raw = _h100_raw()
    assert set(raw) <= set(declared)
    assert list(gpu_to_dict(parse_profile(raw, where="x.json"))) == [
        k for k in declared if k in raw or k in ("aliases", "link_name", "ctas_per_sm")
    ]
    sourced = [f.name for f in dataclasses.fields(GPU)
               if "schema" in f.metadata and f.metadata["schema"].sourced]
    assert list(catalog._SOURCED_FIELDS) == sourced


def test_a_field_declared_with_schema_is_parsed_checked_and_written_back() -> None:
    """Adding a profile field is one declaration: this dataclass stands in for GPU."""
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Part:
        required_count: int = schema.schema(schema.integer)
        factor: float = schema.schema(schema.number(at_most=1.0), default=1.0)
        optional: float | None = schema.schema(schema.number(), default=None)
        nested: dict = schema.schema(schema.named(schema.named(schema.number())),
                                      omit_empty=True, default_factory=dict)

    check = schema.Checker("p.json")
    part = Part(**schema.parse_fields(Part, {"required_count": 3, "optional": None}, check))
    assert part == Part(required_count=3)
    assert schema.to_dict(part) == {"required_count": 3, "factor": 1.0}
    raw = {"required_count": 1, "nested": {"cudnn": {"fwd": 0.5}}}
    assert schema.to_dict(Part(**schema.parse_fields(Part, raw, check))) == {
        **raw, "factor": 1.0}
    with pytest.raises(InputError, match=r"field 'nested\.cudnn\.fwd' must be positive"):
        schema.parse_fields(Part, {"required_count": 1, "nested": {"cudnn": {"fwd": -1}}},
                              check)
    for bad, name in (({}, "required_count"), ({"required_count": 1, "factor": 2}, "factor"),
                      ({"required_count": 1, "typo": 0}, "typo")):
        with pytest.raises(InputError, match=f"p.json: field '{name}'"):
            schema.parse_fields(Part, bad, check)
