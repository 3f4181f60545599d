"""What a new user hit (#15 items 1 and 8), through the real entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MISTRAL = REPO / "tests/fixtures/hf/mistral-7b/config.json"  # max_position_embeddings 32768


def sw(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shapewise", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, check=False)


# ---------------------------------------------------------------- 1. one seq-len rule
def test_estimate_and_check_take_the_same_default_seq_len_and_say_it() -> None:
    est = sw("estimate", str(MISTRAL), "--gpu", "h100", "--json")
    chk = sw("check", str(MISTRAL), "--gpu", "h100", "--json")
    assert est.returncode == 0, est.stderr
    assert chk.returncode in (0, 1), chk.stderr
    assert json.loads(est.stdout)["seq_len"] == 4096  # was 32768: 432 GiB per GPU
    assert json.loads(est.stdout)["notes"][0].startswith("seq_len 4096: the default")
    assert json.loads(chk.stdout)["reports"][0]["seq_len"] == 4096
    note = ("seq_len 4096: the default (max_position_embeddings 32768, capped at 4096; "
            "pass --seq-len or seq_len= to change)")
    for args in (["estimate", str(MISTRAL), "--gpu", "h100"],
                 ["check", str(MISTRAL), "--gpu", "h100"]):
        out = sw(*args).stdout
        assert note in out, out
    # a context under the cap is the default itself
    out = sw("estimate", "gpt2", "--gpu", "h100").stdout
    assert "seq 1024, plan dp1 tp1 pp1 mb1 " in out
    assert "seq_len 1024: the default (max_position_embeddings 1024;" in out
    # an explicit --seq-len is used as given, with no note
    out = sw("estimate", str(MISTRAL), "--gpu", "h100", "--seq-len", "8192").stdout
    assert "seq 8192, plan" in out and "the default" not in out


def test_plan_uses_the_same_default() -> None:
    r = sw("plan", str(MISTRAL), "--gpu", "h100", "--gpus", "8", "--global-batch", "64",
           "--top", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["seq_len"] == 4096
    r = sw("plan", str(MISTRAL), "--gpu", "h100", "--gpus", "8", "--global-batch", "64",
           "--top", "1")
    assert "x seq 4096" in r.stdout and "note: seq_len 4096: the default" in r.stdout


def test_recommend_and_report_use_the_same_default() -> None:
    r = sw("recommend", "--params", "125M", "--gpu", "h100", "--n-trials", "5")
    assert r.returncode == 0, r.stderr
    assert "seq 4096" in r.stdout.splitlines()[0]
    assert "note: seq_len 4096: the default" in r.stdout
    r = sw("report", "--gpu", "h100", "--n-step", "1024", "--json")
    assert json.loads(r.stdout)["sweep"]["m"] == 4096  # micro-batch 1 x the default seq
    assert json.loads(r.stdout)["notes"][0].startswith("M = 4096: the default")
    text = " ".join(sw("report", "--help").stdout.split())
    assert "(default 4096: micro-batch 1 x the default sequence length)" in text


def test_the_python_api_follows_the_same_rule() -> None:
    import shapewise as sw_api
    from shapewise.model.presets import get_preset
    from shapewise.model.run_defaults import DEFAULT_SEQ_LEN, default_seq_len

    mistral = get_preset("mistral-7b")
    assert default_seq_len(mistral)[0] == DEFAULT_SEQ_LEN == 4096
    assert sw_api.estimate(mistral, gpu="h100").seq_len == 4096
    assert sw_api.estimate(get_preset("gpt2"), gpu="h100").seq_len == 1024
    vit = get_preset("vit-base-16")
    assert default_seq_len(vit)[0] == 197


# ---------------------------------------------------------------- 8. small ones
def test_one_error_prefix_for_usage_and_runtime_errors(tmp_path: Path) -> None:
    usage = sw("report", "--n-step", "0", cwd=tmp_path)
    runtime = sw("report", "--gpu", "h1000", cwd=tmp_path)
    for r in (usage, runtime):
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith("shapewise report: error: "), r.stderr
    # before a command is known there is no command to name
    r = sw("nope", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("shapewise: error: ")


def test_check_before_training_warnings_point_at_the_callers_line(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "import shapewise as sw\n"
        "\n"
        f"sw.check_before_training({str(REPO / 'tests/fixtures/hf/gpt2/config.json')!r}, "
        "gpu='a100')\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stderr
    assert f"{script}:3: ShapewiseWarning: shapewise SW001" in r.stderr, r.stderr
    assert "sys:1:" not in r.stderr


def _doc_section(rule: str) -> str:
    text = (REPO / "docs/checks.md").read_text()
    return text[text.index(f"### {rule}"):].split("\n### ", 1)[0]


def test_checks_md_sw010_figures_are_what_the_command_prints() -> None:
    section = _doc_section("SW010")
    cmd = re.search(r"`(shapewise check [^`]+)`", section)
    assert cmd, "the SW010 example names its command"
    for figure, gpu in re.findall(r"\+(\d+\.\d)% on (\w+)", section):
        args = cmd.group(1).split()[1:]
        args[args.index("--gpu") + 1] = gpu
        out = sw(*args).stdout
        row = next(line for line in out.splitlines() if "SW010" in line and "tp-oversized"
                   in line)
        assert f"+{figure}%" in row, (gpu, row)
        gb = re.search(r"\((\d+\.\d) GiB of 80\.0 GiB, allowance included\)", section)
        assert gb and f"needs {gb.group(1)} GiB of 80.0 GiB (allocator allowance" in out, out


@pytest.mark.parametrize("gpu", ["h100", "a100"])
def test_no_info_finding_shows_a_zero_gain(gpu: str) -> None:
    out = sw("check", str(REPO / "tests/fixtures/hf/llama-2-7b/config.json"), "--gpu", gpu,
             "--tp", "8", "--seq-len", "4096").stdout
    rows = [line for line in out.splitlines() if re.match(r"\s+SW\d{3}\s", line)]
    assert rows
    assert not [r for r in rows if " info " in r and "±0%" in r], out


def test_a_live_model_is_traced_at_the_same_default(tmp_path: Path) -> None:
    """check_before_training on a module follows the rule too: context capped at 4096."""
    pytest.importorskip("torch")
    script = tmp_path / "train.py"
    script.write_text(
        "import sys, warnings\n"
        f"sys.path.insert(0, {str(REPO / 'tests/check')!r})\n"
        "import torch\n"
        "import shapewise as sw\n"
        "from shapewise.check.api import analyze\n"
        "from tiny_gpt import GPT, GPTConfig\n"
        "with torch.device('meta'):\n"
        "    model = GPT(GPTConfig(block_size=32768, n_layer=1, n_head=4, n_embd=256))\n"
        "rep = analyze(model, gpu='h100')\n"
        "print(rep.seq_len)\n"
        "print(rep.notes)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stderr
    seq, notes = r.stdout.splitlines()[:2]
    assert seq == "4096"
    assert "seq_len 4096: the default (the model's context 32768, capped at 4096" in notes


# ---------------------------------------------------------------- 8. ViT micro-batch
VIT = REPO / "tests/fixtures/hf/vit-base-patch16-224/config.json"
VIT_NOTE = "micro_batch 128: the default for a ViT (images per GPU, DeiT's 1024 on 8 GPUs"


def test_a_vit_gets_a_batch_of_images_by_default_and_says_so() -> None:
    r = sw("check", str(VIT), "--gpu", "h100")
    assert r.returncode == 0, r.stdout + r.stderr  # was SW004 "+153%" on every ViT config
    assert "micro-batch 128, seq_len 197" in r.stdout and VIT_NOTE in r.stdout
    assert "SW004" not in r.stdout
    r = sw("estimate", "vit-base-16", "--gpu", "h100")
    assert "seq 197, plan dp1 tp1 pp1 mb128 " in r.stdout and VIT_NOTE in r.stdout
    r = sw("recommend", "--params", "86M", "--gpu", "h100", "--arch", "vit", "--n-trials", "5")
    assert r.returncode == 0, r.stderr
    assert "micro-batch 128" in r.stdout.splitlines()[0] and VIT_NOTE in r.stdout
    # a text model keeps one sequence, and is not told about it at every check
    r = sw("check", str(MISTRAL), "--gpu", "h100")
    assert "micro-batch 1," in r.stdout and "micro_batch 1: the default" not in r.stdout


def test_a_larger_batch_is_not_priced_as_a_shape_gain() -> None:
    r = sw("check", str(VIT), "--gpu", "h100", "--micro-batch", "1", "--json")
    findings = json.loads(r.stdout)["reports"][0]["findings"]
    sw004 = [f for f in findings if f["rule_id"] == "SW004"]
    assert len(sw004) == 1
    f = sw004[0]
    assert f["field"] == "micro_batch" and f["fix"] == 8
    assert f["step_speedup"] is None and f["gemm_speedup"] is None
    assert "none is priced" in f["message"]
    text = sw("check", str(VIT), "--gpu", "h100", "--micro-batch", "1").stdout
    row = next(line for line in text.splitlines() if line.strip().startswith("SW004  "))
    assert "%" not in row  # no step speedup shown


# ---------------------------------------------------------------- 6. a source checkout
def test_a_source_checkout_finds_kernels_and_profiles_beside_the_package(
        tmp_path: Path) -> None:
    """`pip install .` then Python started in the repository root imports the ``shapewise/``
    folder there, where no ``shapewise.kernels`` or ``shapewise.profiles`` is mapped in:
    the package finds ``kernels/`` and ``profiles/`` beside it."""
    import shutil

    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "shapewise", checkout / "shapewise",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "kernels", checkout / "kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "profiles", checkout / "profiles")
    code = ("import shapewise, shapewise.kernels, sys; from pathlib import Path; "
            "print(Path(shapewise.kernels.__file__).parent); "
            "print(len(shapewise.list_gpus())); print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=checkout, capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    folder, n_gpus, torch_loaded = r.stdout.split()
    assert Path(folder) == checkout / "kernels"
    assert int(n_gpus) == len(list((REPO / "profiles").glob("*.json")))
    assert torch_loaded == "False"


