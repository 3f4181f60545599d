"""``shapewise gpus``: through its own parser, and through the real entry point."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shapewise.cli import gpus
from shapewise.hardware.catalog import get_gpu, gpu_to_dict, list_gpus, parse_profile

# mi250x is two GCDs (profiles/mi250x-gcd.json, no one-device profile); + B300 and GB300
N_GPUS = 24


@pytest.fixture(autouse=True)
def _builtin_catalog_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHAPEWISE_PROFILES", raising=False)


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shapewise")
    sub = parser.add_subparsers(dest="command", required=True)
    gpus.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def _table_rows(out: str) -> dict[str, str]:
    """id -> its table line."""
    ids = {g.id for g in list_gpus()}
    lines = out.splitlines()
    return {cells[0]: line for line in lines if (cells := line.split()) and cells[0] in ids}


def test_table_lists_every_gpu_with_units_in_headers(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["gpus"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for column in ("id", "SMs/CUs", "bf16 TFLOP/s", "fp8 TFLOP/s", "memory GB",
                   "bandwidth TB/s", "link GB/s", "calibration"):
        assert column in header
    rows = _table_rows(out)
    assert set(rows) == {g.id for g in list_gpus()}
    assert len(rows) == N_GPUS
    h100 = rows["h100-sxm"].split()
    assert "989.4" in h100 and "1978.9" in h100 and "3.35" in h100 and "450" in h100
    assert rows["h100-sxm"].rstrip().endswith(
        "fitted" if get_gpu("h100").calibration else "defaults"
    )
    # numbers print as written: 312, not 312.0; missing math and links print '-'
    a100 = rows["a100-sxm-40gb"].split()
    assert "312" in a100 and "-" in a100
    assert rows["a10"].split()[-2] == "-"  # no scale-up link
    assert "304" in rows["mi300x"].split()  # CUs


def test_calibration_column_says_fitted_or_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fitted = gpu_to_dict(get_gpu("l4"))
    fitted.update(id="l4-fitted", name="L4 (fitted here)", aliases=[])
    fitted["calibration"] = {
        "status": "fitted", "gemm_efficiency": {"bf16": 0.7}, "launch_us": 5.0, "k_fill": 32.0,
        "bandwidth_efficiency": 0.85, "misalign_16b_factor": 0.6, "misalign_coarse_factor": 0.9,
        "tile_reuse_cost": 0.1, "attention_fwd_efficiency": 0.5, "attention_bwd_efficiency": 0.4,
        "provenance": {"data": "test"},
    }
    plain = gpu_to_dict(get_gpu("l4"))
    plain.update(id="l4-plain", name="L4 (no calibration)", aliases=[])
    plain.pop("calibration", None)
    for doc in (fitted, plain):
        (tmp_path / f"{doc['id']}.json").write_text(json.dumps(doc), encoding="utf-8")
    monkeypatch.setenv("SHAPEWISE_PROFILES", str(tmp_path))
    assert _run(["gpus"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert len(rows) == N_GPUS + 2
    assert rows["l4-fitted"].split()[-1] == "fitted"
    assert rows["l4-plain"].split()[-1] == "defaults"


def test_json_is_the_list_of_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["gpus", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data, list) and len(data) == N_GPUS
    assert [d["id"] for d in data] == sorted(d["id"] for d in data)
    by_id = {d["id"]: d for d in data}
    assert by_id["h100-sxm"] == gpu_to_dict(get_gpu("h100"))
    for doc in data:  # each entry is a valid profile again
        assert parse_profile(doc, where="stdout").id == doc["id"]


def test_bad_user_profile_is_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken.json").write_text("[]", encoding="utf-8")
    monkeypatch.setenv("SHAPEWISE_PROFILES", str(tmp_path))
    with pytest.raises(ValueError, match="broken"):
        _run(["gpus"])


# ---------------------------------------------------------------- the real entry point
def _shapewise(*argv: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SHAPEWISE_PROFILES"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "shapewise", *argv],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def test_entry_point_prints_the_table() -> None:
    proc = _shapewise("gpus")
    assert proc.returncode == 0, proc.stderr
    assert "bf16 TFLOP/s" in proc.stdout
    assert len(_table_rows(proc.stdout)) == N_GPUS
    assert proc.stderr == ""


def test_entry_point_prints_json() -> None:
    proc = _shapewise("gpus", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {d["id"] for d in data} == {g.id for g in list_gpus()}
    assert {d["id"]: d for d in data}["h100-sxm"]["peak_tflops"]["bf16"] == 989.4


def test_entry_point_reports_a_bad_profile_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"sm_count": NaN}', encoding="utf-8")
    proc = _shapewise("gpus", env_extra={"SHAPEWISE_PROFILES": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.startswith("shapewise gpus: error: ")
    assert "broken.json" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # no traceback
