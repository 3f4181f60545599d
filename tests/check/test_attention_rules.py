"""SW020 attention-backend and SW021 attention-fallback, and the backend a config states."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import shapewise as sw
from shapewise import ModelShape
from shapewise.check.api import analyze, check_shape
from shapewise.model.load import load_shape
from shapewise.model.megatron import read_megatron

REPO = Path(__file__).resolve().parents[2]
LLAMA = ModelShape.llama(hidden_size=4096, num_attention_heads=32, num_hidden_layers=32,
                         intermediate_size=11008, vocab_size=32000)
WIDE = ModelShape.llama(hidden_size=4096, num_attention_heads=8, num_hidden_layers=32,
                        intermediate_size=11008, vocab_size=32000)  # head dim 512


def _rule(findings: list, rule_id: str) -> list:
    return [f for f in findings if f.rule_id == rule_id]


@pytest.mark.parametrize("gpu", ["h100", "b200"])
def test_fa2_on_hopper_and_blackwell_is_told_to_use_cudnn(gpu: str) -> None:
    (f,) = _rule(check_shape(LLAMA, gpu=gpu, seq_len=4096, attention_backend="fa2"), "SW020")
    assert f.field == "attention_backend" and f.value == "fa2" and f.fix == "cudnn"
    # the speedups are the cost model's: the step with each backend, priced by estimate
    old = sw.estimate(LLAMA, gpu=gpu, seq_len=4096, attention_backend="fa2")
    new = sw.estimate(LLAMA, gpu=gpu, seq_len=4096, attention_backend="cudnn")
    assert f.step_speedup == pytest.approx(old.step_time_s / new.step_time_s)
    assert f.gemm_speedup > 1.5 and f.severity == "warning"


def test_the_default_backend_is_not_flagged_where_it_is_the_fastest_fitted() -> None:
    assert not _rule(check_shape(LLAMA, gpu="h100", seq_len=4096), "SW020")
    assert not _rule(check_shape(LLAMA, gpu="a100", seq_len=4096), "SW020")  # nothing fitted


def test_a_head_dim_above_256_is_told_to_come_back_to_the_fused_kernels() -> None:
    (f,) = _rule(check_shape(WIDE, gpu="h100", seq_len=4096), "SW021")
    assert f.field == "num_attention_heads" and (f.value, f.fix) == (8, 16)
    assert "sdpa-efficient" in f.message and f.step_speedup > 1
    # a stated backend, or a GPU without fused kernels: quiet
    assert not _rule(check_shape(WIDE, gpu="h100", seq_len=4096,
                                 attention_backend="sdpa-efficient"), "SW021")
    assert not _rule(check_shape(WIDE, gpu="v100", dtype="fp16", seq_len=2048), "SW021")
    assert not _rule(check_shape(LLAMA, gpu="h100", seq_len=4096), "SW021")


def test_configs_state_their_backend() -> None:
    hf = json.loads((REPO / "tests/fixtures/hf/gpt2/config.json").read_text())
    assert load_shape({**hf, "attn_implementation": "flash_attention_2"}).attention_backend \
        == "fa2"
    assert load_shape({**hf, "_attn_implementation": "sdpa"}).attention_backend is None
    eager = load_shape({**hf, "attn_implementation": "eager"})
    assert eager.attention_backend == "sdpa-math" and any("eager" in n for n in eager.notes)
    flex = load_shape({**hf, "attn_implementation": "flex_attention"})
    assert flex.attention_backend is None and any("flex_attention" in n for n in flex.notes)
    base = {"hidden_size": 4096, "num_attention_heads": 32, "num_layers": 32,
            "vocab_size": 32000}
    assert read_megatron({**base, "use_flash_attn": True}).attention_backend == "fa2"
    assert read_megatron({**base, "attention_backend": "fused"}).attention_backend == "cudnn"
    assert read_megatron({**base, "--attention-backend": "AttnBackend.unfused"}
                         ).attention_backend == "sdpa-math"
    assert read_megatron({**base, "attention_backend": "auto"}).attention_backend is None
    # the stated backend is what check prices, unless one is passed
    rep = analyze({**hf, "attn_implementation": "flash_attention_2"}, gpu="b200",
                  seq_len=1024, detect=False)
    assert any(f.rule_id == "SW020" and f.value == "fa2" for f in rep.findings)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shapewise", *args], capture_output=True,
                          text=True, check=False, cwd=REPO)


def test_cli_attention_backend_flag() -> None:
    ok = _cli("estimate", "llama-2-7b", "--gpu", "h100", "--attention-backend", "cudnn",
              "--json")
    assert ok.returncode == 0, ok.stderr
    slow = _cli("estimate", "llama-2-7b", "--gpu", "h100", "--attention-backend", "fa2",
                "--json")
    assert json.loads(slow.stdout)["step_time_s"] > json.loads(ok.stdout)["step_time_s"]
    chk = _cli("check", "llama-2-7b", "--gpu", "b200", "--attention-backend", "fa2")
    assert chk.returncode == 1 and "SW020" in chk.stdout


@pytest.mark.parametrize(("backend", "gpu", "words"), [
    ("flashy", "h100", "unknown attention backend 'flashy'"),
    ("fa3", "a100", "fa3 does not run"),
    ("ck", "h100", "ck does not run"),
])
def test_cli_bad_backend_is_one_line_and_exit_2(backend: str, gpu: str, words: str) -> None:
    for cmd in ("estimate", "check"):
        proc = _cli(cmd, "llama-2-7b", "--gpu", gpu, "--attention-backend", backend)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "attention_backend" in lines[0] and words in lines[0]
        assert "Traceback" not in proc.stderr
