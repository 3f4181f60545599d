"""Shape documents pass between commands (#15 item 2, #12 item 4), through the real CLI.

Every command that takes a shape (estimate, check, plan) accepts every shape document the tool
writes: ``recommend --json`` (the whole document, its ``best``, its ``best.shape``),
``estimate --json``, and a ModelShape's JSON. ``check`` of a recommended shape, at the
settings it was recommended for, reports no warning.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shapewise", *args], capture_output=True,
                          text=True, timeout=300)


def recommend(tmp_path: Path, *args: str) -> tuple[Path, dict[str, Any]]:
    r = run("recommend", *args, "--json")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "rec.json"
    path.write_text(r.stdout)
    return path, json.loads(r.stdout)


def test_every_shape_document_goes_to_estimate_and_check(tmp_path: Path) -> None:
    rec_path, rec = recommend(tmp_path, "--params", "125M", "--gpu", "a100", "--n-trials",
                              "20", "--seq-len", "1024", "--micro-batch", "2")
    best_shape = rec["best"]["shape"]
    docs = {"rec.json": rec_path}
    for name, data in (("best.json", rec["best"]), ("shape.json", best_shape)):
        docs[name] = tmp_path / name
        docs[name].write_text(json.dumps(data))

    # recommend -> estimate: every form gives the recommended shape
    for name, path in docs.items():
        r = run("estimate", str(path), "--gpu", "a100", "--seq-len", "1024",
                "--micro-batch", "2", "--json")
        assert r.returncode == 0, (name, r.stderr)
        assert json.loads(r.stdout)["shape"] == best_shape, name
    est_path = tmp_path / "est.json"
    est_path.write_text(r.stdout)
    docs["est.json"] = est_path
    r = run("estimate", str(est_path), "--gpu", "a100", "--seq-len", "1024", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["shape"] == best_shape

    # recommend -> check: every form is read, the documents at the settings they state
    r = run("check", *map(str, docs.values()), "--gpu", "a100", "--json")
    assert r.returncode in (0, 1), r.stderr
    reports = {Path(rep["path"]).name: rep for rep in json.loads(r.stdout)["reports"]}
    assert set(reports) == set(docs) and not json.loads(r.stdout)["errors"]
    assert reports["rec.json"]["source"] == "recommend"
    assert reports["est.json"]["source"] == "estimate"
    assert reports["shape.json"]["source"] == "shape"
    for name in ("rec.json", "est.json"):
        rep = reports[name]
        assert (rep["seq_len"], rep["micro_batch"], rep["tp"]) == (1024, 2, 1), name
    # text output names the kind of document
    r = run("check", str(rec_path), "--gpu", "a100")
    assert "(shapewise recommend JSON)" in r.stdout and "computed for" not in r.stdout
    # checked on another GPU than it was recommended for: the report says so
    r = run("check", str(rec_path), "--gpu", "h100")
    assert f"GPU: the document was computed for {rec['gpu']}; checked on h100-sxm" in r.stdout


# (budget, GPU, arch, extra recommend settings): a spread of sizes, families and GPUs; the
# ViT runs at a micro-batch ViTs train at (32-256 images per GPU): at recommend's default
# of 1, 197 tokens make SW004 fire on the run setting, not on the shape
ROUND_TRIPS = [
    ("125M", "a100", "gpt", ()),
    ("1.3B", "h100", "llama", ()),
    ("7B", "h100", "llama", ("--tp", "2")),
    ("300M", "mi250x-gcd", "vit", ("--micro-batch", "64")),
    # on main before the training plan's step model landed, the search picked hidden 800
    # here and SW002 warned; kept as a regression case (recommend now keeps head dims 64/128)
    ("125M", "h100", "llama", ()),
]


@pytest.mark.parametrize(("budget", "gpu", "arch", "extra"), ROUND_TRIPS,
                         ids=["125M-gpt-a100", "1.3B-llama-h100", "7B-llama-h100-tp2",
                              "300M-vit-mi250x-gcd", "125M-llama-h100"])
def test_check_of_a_recommended_shape_at_its_settings_has_no_warning(
        tmp_path: Path, budget: str, gpu: str, arch: str, extra: tuple[str, ...]) -> None:
    rec_path, rec = recommend(tmp_path, "--params", budget, "--gpu", gpu, "--arch", arch,
                              *extra)
    r = run("check", str(rec_path), "--gpu", gpu, "--json")
    data = json.loads(r.stdout)
    assert not data["errors"], data["errors"]
    (report,) = data["reports"]
    inputs = rec["inputs"]
    assert (report["seq_len"], report["micro_batch"], report["tp"]) == (
        inputs["seq_len"], inputs["micro_batch"], inputs["tp"])
    loud = [f["summary"] + " (" + f["rule_id"] + ")" for f in report["findings"]
            if f["severity"] != "info"]
    assert loud == [] and r.returncode == 0, loud


def test_a_mistyped_field_says_did_you_mean(tmp_path: Path) -> None:
    cfg = json.loads((REPO / "tests/fixtures/hf/gpt2/config.json").read_text())
    cfg["n_heads"] = cfg.pop("n_head")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    for command in (["check", str(path)], ["estimate", str(path), "--gpu", "a100"]):
        r = run(*command)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        (line,) = r.stderr.strip().splitlines()
        assert "n_head: missing" in line and "did you mean n_head?" in line, line


def test_presets_are_shapes_for_check_too() -> None:
    r = run("check", "gpt2", "--gpu", "a100")
    assert r.returncode == 1 and "SW001" in r.stdout and "gpt2: gpt2 (preset)" in r.stdout
    r = run("check", "gpt-2", "--gpu", "a100")
    assert r.returncode == 2 and "did you mean 'gpt2'" in r.stderr


def test_recommend_json_goes_to_plan(tmp_path: Path) -> None:
    rec_path, rec = recommend(tmp_path, "--params", "350M", "--gpu", "h100", "--n-trials",
                              "20")
    best = tmp_path / "best.json"
    best.write_text(json.dumps(rec["best"]))
    shape = tmp_path / "shape.json"
    shape.write_text(json.dumps(rec["best"]["shape"]))
    planned = []
    for path in (rec_path, best, shape):
        r = run("plan", str(path), "--gpu", "h100", "--gpus", "8", "--global-batch", "64",
                "--seq-len", "2048", "--json")
        assert r.returncode == 0, (path.name, r.stderr)
        planned.append(json.loads(r.stdout)["plans"][0])
    assert planned[0] == planned[1] == planned[2]  # the same shape, the same best plan
