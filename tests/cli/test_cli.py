"""The command line through its real entry point: output, --json, one-line errors, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shapewise.cli.main import SUBCOMMANDS, build_parser

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "shapewise"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "shapewise"]
    return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_every_subcommand_is_registered() -> None:
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert set(SUBCOMMANDS) <= set(choices)


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_of_every_subcommand(sub: str, tmp_path: Path) -> None:
    r = run(sub, "--help", cwd=tmp_path)
    assert r.returncode == 0 and "usage:" in r.stdout


def test_report_table_json_and_plot(tmp_path: Path) -> None:
    r = run("report", "--gpu", "H100-SXM5-80GB", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ridge FLOP/byte" in r.stdout and "N that fill whole waves" in r.stdout
    assert "median TFLOP/s by alignment of N: multiples of 64 " in r.stdout
    r = run("report", "--gpu", "mi250x-gcd", "--json", "--n-step", "512", cwd=tmp_path)
    data = json.loads(r.stdout)
    assert data["gpu"] == "mi250x-gcd" and data["sweep"]["points"]


def test_recommend_table_and_json(tmp_path: Path) -> None:
    r = run("recommend", "--params", "350M", "--gpu", "a100", "--n-trials", "30",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "best vs GPT-3 Medium" in r.stdout and "tokens/s/GPU" in r.stdout and "MFU" in r.stdout
    r = run("recommend", "--params", "1.1B", "--gpu", "h100", "--arch", "llama",
            "--tp", "2", "--n-trials", "30", "--json", cwd=tmp_path)
    data = json.loads(r.stdout)
    assert data["best"]["num_attention_heads"] % 2 == 0


def test_recommend_arch_moe_table_json_and_errors(tmp_path: Path) -> None:
    args = ("recommend", "--arch", "moe", "--params", "47B", "--active-params", "13B",
            "--gpu", "h100")
    r = run(*args, "--top", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "experts" in r.stdout and "expert FFN" in r.stdout and "grouped-GEMM tile" in r.stdout
    r = run(*args, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["method"] == "grid" and doc["inputs"]["arch"] == "moe"
    best = doc["best"]
    assert best["moe_intermediate_size"] % 128 == 0
    assert abs(best["params"] / 47e9 - 1) <= 0.05
    assert abs(best["active_params"] / 13e9 - 1) <= 0.05
    for extra, msg in (((), "--active-params: required with --arch moe"),
                       (("--active-params", "60B"), "--active-params: 60B must be below")):
        r = run("recommend", "--arch", "moe", "--params", "47B", "--gpu", "h100", *extra,
                cwd=tmp_path)
        assert r.returncode == 2 and msg in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_recommend_recipe_prices_under_fp8(tmp_path: Path) -> None:
    args = ("recommend", "--params", "1.1B", "--arch", "llama", "--top", "1", "--json")
    plain = json.loads(run(*args, "--gpu", "h100", cwd=tmp_path).stdout)
    r = run(*args, "--gpu", "h100", "--recipe", "te-delayed", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    fp8 = json.loads(r.stdout)
    assert fp8["inputs"]["recipe"] == "te-delayed" and plain["inputs"]["recipe"] is None
    assert fp8["best"]["tokens_per_s"] != plain["best"]["tokens_per_s"]
    r = run(*args, "--gpu", "a100", "--recipe", "te-delayed", cwd=tmp_path)
    assert r.returncode == 2 and "dtype: " in r.stderr and "no fp8 tensor cores" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_recommend_vit_image_and_patch(tmp_path: Path) -> None:
    r = run("recommend", "--params", "300M", "--gpu", "mi250x-gcd", "--arch", "vit",
            "--image-size", "224", "--patch-size", "14", "--micro-batch", "16",
            "--n-trials", "20", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    best = json.loads(r.stdout)["best"]["shape"]
    assert best["patch_size"] == 14 and best["arch"] == "vit"


def test_estimate_breakdown_and_json(tmp_path: Path) -> None:
    cfg = REPO / "tests/fixtures/hf/llama-2-7b/config.json"
    r = run("estimate", str(cfg), "--gpu", "h100", "--micro-batch", "2", "--tp", "2",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "mlp_gate_up" in r.stdout and "tp_allreduce" in r.stdout and "MFU" in r.stdout
    data = json.loads(run("estimate", "gpt2", "--gpu", "a100", "--seq-len", "1024",
                          "--json", cwd=tmp_path).stdout)
    assert data["tokens_per_s"] > 0 and data["breakdown"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["report", "--gpu", "h1000"], "unknown GPU"),
        (["report", "--gpu", "a100", "--dtype", "fp8"], "fp8"),
        (["recommend", "--params", "-3B", "--gpu", "a100"], "--params: must be positive"),
        (["recommend", "--params", "1e30", "--gpu", "a100"], "above the largest shape"),
        (["recommend", "--params", "1B", "--gpu", "a100", "--seed", "-1"], "seed: must be"),
        (["recommend", "--params", "2.7B", "--gpu", "a100", "--seq-len", "10000000"],
         "seq_len: 10000000 learned positions alone"),
        (["recommend", "--params", "1B", "--gpu", "a100", "--micro-batch", "100000"],
         "micro_batch: 100000 is beyond"),
        (["estimate", "gpt2", "--gpu", "a100", "--micro-batch", "100000"],
         "micro_batch: 100000 is beyond"),
        (["recommend", "--params", "1e3", "--gpu", "a100"], "params"),
        (["recommend", "--params", "1e16", "--gpu", "a100"], "params"),
        (["recommend", "--params", "1B", "--gpu", "a100", "--tolerance", "0"], "tolerance"),
        (["recommend", "--params", "1B", "--gpu", "a100", "--tp", "997"], "tp"),
        (["recommend", "--params", "lots", "--gpu", "a100"], "--params"),
        (["estimate", "missing.json", "--gpu", "a100"], "missing.json"),
        (["estimate", "gpt2", "--gpu", "a100", "--tp", "5"], "tp"),
        (["estimate", "gpt2", "--gpu", "a100", "--seq-len", "0"], "--seq-len"),
        (["report", "--profile", "nope.json"], "nope.json"),
        (["fit", "nope.json", "--out", "x.json"], "nope.json"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_hostile_profile_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1, "sm_count": NaN}')
    r = run("report", "--profile", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and str(bad) in r.stderr and len(r.stderr.splitlines()) == 1


def test_profile_option_on_every_command_that_prices(tmp_path: Path) -> None:
    """A profile file (e.g. from 'shapewise fit') replaces the catalog entry everywhere."""
    doc = json.loads((REPO / "profiles" / "h100-sxm.json").read_text())
    doc["id"], doc["name"], doc["aliases"] = "my-h100", "My H100 (measured)", []
    prof = tmp_path / "my-h100.json"
    prof.write_text(json.dumps(doc))
    r = run("gpus", "--profile", str(prof), cwd=tmp_path)
    assert r.returncode == 0 and "my-h100" in r.stdout
    r = run("report", "--profile", str(prof), "--json", "--n-step", "4096", cwd=tmp_path)
    assert json.loads(r.stdout)["gpu"] == "my-h100"
    r = run("estimate", "gpt2", "--profile", str(prof), "--seq-len", "1024", "--json",
            cwd=tmp_path)
    assert json.loads(r.stdout)["gpu"] == "my-h100"
    r = run("recommend", "--params", "125M", "--profile", str(prof), "--n-trials", "10",
            "--json", cwd=tmp_path)
    assert json.loads(r.stdout)["gpu"] == "my-h100"
    cfg = REPO / "tests/fixtures/hf/gpt2/config.json"
    r = run("check", str(cfg), "--profile", str(prof), "--json", cwd=tmp_path)
    assert r.returncode in (0, 1) and "my-h100" in r.stdout


def test_check_shape_profile_argument(tmp_path: Path) -> None:
    import shapewise as sw

    doc = json.loads((REPO / "profiles" / "a100-sxm-80gb.json").read_text())
    doc["id"], doc["aliases"] = "my-a100", []
    prof = tmp_path / "my-a100.json"
    prof.write_text(json.dumps(doc))
    shape = sw.from_hf_config(REPO / "tests/fixtures/hf/gpt2/config.json")
    findings = sw.check_shape(shape, profile=str(prof), seq_len=1024)
    assert findings and all(f.gpu == "my-a100" for f in findings)


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # `shapewise recommend ... | head -1`: the reader goes away after one line
    exe = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "shapewise"]
    proc = subprocess.Popen([*exe, "recommend", "--params", "350M", "--gpu", "a100",
                             "--n-trials", "20", "--top", "10"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command writes anything
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_budget_header_uses_the_count_suffix(tmp_path: Path) -> None:
    r = run("recommend", "--params", "1T", "--gpu", "h100", "--n-trials", "10", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Budget 1T params")


def test_a_path_that_looks_like_a_negative_number_is_still_a_path(tmp_path: Path) -> None:
    # --params -1B is joined into --params=-1B; a folder named "-1" after a flag or after
    # "--" must not be
    folder = tmp_path / "-1"
    folder.mkdir()
    (folder / "config.json").write_text((REPO / "tests/fixtures/hf/gpt2/config.json")
                                        .read_text())
    r = run("check", "--gpu", "h100", "--", "-1", cwd=tmp_path)
    assert r.returncode == 1 and "SW001" in r.stdout, r.stderr
    r = run("check", "--json", "-1", cwd=tmp_path)
    assert r.returncode == 1 and json.loads(r.stdout)["reports"], r.stderr


def test_a_gpu_without_bf16_defaults_to_fp16(tmp_path: Path) -> None:
    r = run("report", "--gpu", "v100", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dtype"] == "fp16"
    r = run("estimate", "gpt2", "--gpu", "v100", "--json", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["dtype"] == "fp16", r.stderr
    r = run("estimate", "gpt2", "--gpu", "v100", "--dtype", "bf16", cwd=tmp_path)
    assert r.returncode == 2 and "has no bf16 math" in r.stderr  # asked for: refused


def test_estimate_with_a_recipe_and_experts(tmp_path: Path) -> None:
    moe = Path(__file__).resolve().parents[1] / "fixtures" / "hf_moe" / "mixtral-8x7b"
    r = run("estimate", str(moe), "--gpu", "h100", "--seq-len", "4096", "--ep", "8",
            "--recipe", "te-delayed", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    names = {op["name"] for op in data["breakdown"]}
    assert {"experts_up", "ep_dispatch", "router", "fp8_quantize"} <= names
    assert data["memory"]["fp8_weights"] > 0
    r = run("estimate", str(moe), "--gpu", "h100", "--seq-len", "4096", cwd=tmp_path)
    assert r.returncode == 0 and "8 experts of 14336, top-2" in r.stdout
    for args, field in ((["--ep", "3"], "ep"), (["--recipe", "mxfp8"], "recipe"),
                        (["--imbalance", "0.5"], "--imbalance"),
                        (["--fp8-attention"], "--fp8-attention")):
        r = run("estimate", str(moe), "--gpu", "h100", *args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stdout)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and field in lines[0], (args, r.stderr)
    r = run("estimate", "llama-2-7b", "--gpu", "a100", "--recipe", "te-delayed", cwd=tmp_path)
    assert r.returncode == 2 and "no fp8 tensor cores" in r.stderr
