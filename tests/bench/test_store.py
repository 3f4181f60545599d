"""The results file: always a loadable document, never a duplicate, one writer at a time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shapewise.bench import store as store_mod
from shapewise.bench.store import FORMAT, BenchStore, atomic_write_json, load_document
from shapewise.errors import InputError


def _rec(i: int) -> dict:
    return {"key": f"gemm:m={i},n=1,k=1,b=1,dtype=fp32", "kind": "gemm", "status": "ok",
            "median_s": 1e-3 * i}


def test_create_add_and_reopen(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    with BenchStore.create(out, provenance={"command": "test"}, run={"planned": 3}) as s:
        assert load_document(out)["measurements"] == []  # the file exists from the start
        s.add(_rec(1))
        s.add(_rec(2))
        assert load_document(out)["run"]["done"] == 2
    doc = load_document(out)
    assert doc["format"] == FORMAT and doc["provenance"] == {"command": "test"}
    assert [r["key"] for r in doc["measurements"]] == [_rec(1)["key"], _rec(2)["key"]]
    reopened = BenchStore.open(out)
    assert reopened.done_keys == {_rec(1)["key"], _rec(2)["key"]}


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    with BenchStore.create(tmp_path / "b.json", provenance={}, run={}) as s:
        s.add(_rec(1))
        with pytest.raises(ValueError, match="already"):
            s.add(_rec(1))
    assert len(load_document(tmp_path / "b.json")["measurements"]) == 1


def test_failed_write_leaves_the_old_document_and_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "b.json"
    atomic_write_json(out, {"version": "old"})

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(out, {"version": "new"})
    assert json.loads(out.read_text()) == {"version": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]


def test_a_killed_writer_leaves_a_whole_document(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop the write half-way through the temporary file: the results file is untouched."""
    out = tmp_path / "b.json"
    with BenchStore.create(out, provenance={}, run={}) as s:
        s.add(_rec(1))
        real_fdopen = os.fdopen

        class Torn:
            def __init__(self, *a: object, **k: object) -> None:
                self.f = real_fdopen(*a, **k)  # type: ignore[arg-type]

            def __enter__(self) -> Torn:
                return self

            def __exit__(self, *exc: object) -> None:
                self.f.close()

            def write(self, text: str) -> None:
                self.f.write(text[: len(text) // 2])
                raise KeyboardInterrupt  # stands in for the process dying mid-write

        monkeypatch.setattr(store_mod.os, "fdopen", Torn)
        with pytest.raises(KeyboardInterrupt):
            s.add(_rec(2))
        monkeypatch.undo()
    doc = load_document(out)
    assert [r["key"] for r in doc["measurements"]] == [_rec(1)["key"]]


def test_second_writer_is_refused_and_lock_is_tidied(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    with (BenchStore.create(out, provenance={}, run={}),
          pytest.raises(InputError, match="another shapewise bench"),
          BenchStore.open(out)):
        pass
    assert not (tmp_path / ".b.json.lock").exists()


@pytest.mark.parametrize(("text", "match"), [
    ("{not json", "invalid JSON"),
    ('{"format": "something-else"}', "not a shapewise bench"),
    (json.dumps({"format": FORMAT, "provenance": {}, "run": {}, "measurements": {}}),
     "measurements"),
    (json.dumps({"format": FORMAT, "provenance": {}, "run": {}, "measurements": [{}]}),
     r"measurements\[0\]"),
])
def test_load_document_names_the_problem(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        load_document(path)


def test_load_document_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such"):
        load_document(tmp_path / "nope.json")
