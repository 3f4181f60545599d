"""scripts/validate_steps.py on a synthetic folder shaped like ../shared/data (the real
files are never copied into the repository)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import validate_steps  # noqa: E402

import shapewise as sw  # noqa: E402

COLS = ["source", "table", "model", "d_model", "n_heads", "head_dim", "n_layers",
        "expansion_ratio", "ffn_hidden", "vocab_size", "num_params_reported", "seq_len",
        "n_gpus", "gpu", "precision", "mp_mode", "fsdp_sharding", "act_ckpt",
        "act_cpu_offload", "micro_batch", "grad_accum", "global_batch_seqs",
        "tput_tok_per_s_per_gpu"]


def _row(model: str, d: int, heads: int, layers: int, seq: int, gpus: int, gpu: str,
         precision: str, mp: str, shard: str, ckpt: bool, mb: int, ga: int,
         tput: float) -> list[object]:
    return ["test", "t", model, d, heads, d // heads, layers, 4, 4 * d, 50368, 0, seq, gpus,
            gpu, precision, mp, shard, ckpt, False, mb, ga, mb * ga * gpus, tput]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rows = [
        _row("mpt-125m", 768, 12, 12, 2048, 8, "a100_80gb", "amp_bf16", "DEFAULT",
             "FULL_SHARD", False, 32, 2, 140000.0),
        _row("mpt-1b", 2048, 16, 24, 2048, 16, "h100_80gb", "amp_bf16", "DEFAULT",
             "SHARD_GRAD_OP", False, 12, 1, 40000.0),
        _row("mpt-7b", 4096, 32, 32, 2048, 8, "a100_40gb", "bf16", "PURE", "FULL_SHARD",
             True, 12, 4, 3700.0),
        _row("mpt-1b", 2048, 16, 24, 2048, 8, "h100_80gb", "amp_fp8", "DEFAULT",
             "FULL_SHARD", False, 10, 6, 30000.0),
    ]
    with open(tmp_path / validate_steps.RUNS, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLS)
        w.writerows(rows)
    return tmp_path


def test_every_bf16_row_is_predicted_and_fp8_is_refused(data: Path) -> None:
    recs = validate_steps.evaluate(data)
    assert [("refused" in r) for r in recs] == [False, False, False, True]
    assert "fp8" in recs[3]["refused"]
    for r in recs[:3]:
        assert r["predicted"] > 0 and r["fits"]
        assert r["error_pct"] == pytest.approx((r["predicted"] / r["published"] - 1) * 100)
    # the row's plan: 8 data-parallel FSDP ranks, gradient accumulation 2
    row = next(validate_steps.read_rows(data))
    kw = validate_steps.case(row)
    assert kw["plan"] == sw.Plan(dp=8, fsdp="full", micro_batch=32, global_batch=512)
    assert kw["param_gather_dtype"] == "fp32" and kw["fused_loss"]


def test_mpt_shape_has_the_published_parameter_count() -> None:
    row = {"d_model": "4096", "n_heads": "32", "n_layers": "32", "ffn_hidden": "16384",
           "vocab_size": "50368", "seq_len": "2048", "model": "mpt-7b"}
    # README §15: NumParams = L·(12d²+13d) + 2d + V·d + S·d, 6,658,859,008 for MPT-7B
    assert sw.count_params(validate_steps.mpt_shape(row)) == 6_658_859_008


def test_table_is_written_between_its_marks(data: Path, tmp_path: Path) -> None:
    doc = tmp_path / "validation.md"
    doc.write_text("# Validation\n\nkept\n", encoding="utf-8")
    r = subprocess.run([sys.executable, str(SCRIPTS / "validate_steps.py"), "--data",
                        str(data), "--write", str(doc)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    text = doc.read_text(encoding="utf-8")
    assert "kept" in text and validate_steps.BEGIN in text and validate_steps.END in text
    assert "| A100 | 2 |" in text and "| H100 | 1 |" in text and "Refused (1 rows" in text
    # a second run replaces the block, never appends another
    subprocess.run([sys.executable, str(SCRIPTS / "validate_steps.py"), "--data", str(data),
                    "--write", str(doc)], check=True, capture_output=True, timeout=300)
    assert doc.read_text(encoding="utf-8").count(validate_steps.BEGIN) == 1


def test_without_data_it_says_so(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(SCRIPTS / "validate_steps.py"), "--data",
                        str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no llmfoundry_mpt_throughput.csv there" in r.stderr
    assert validate_steps.data_dir(None) is None or (
        validate_steps.data_dir(None) / validate_steps.RUNS).is_file()


def test_fit_returns_every_parameter_within_its_bounds(data: Path) -> None:
    out = validate_steps.fit(data, fixed={"kernel_overhead_us": 0.0},
                             keep=lambda i: i < 3)  # the three bf16 rows
    assert out["rows"] == 3 and out["kernel_overhead_us"] == 0.0
    for name, (_, lo, hi) in validate_steps.FIT_PARAMETERS.items():
        assert lo <= out[name] <= hi, name
    with pytest.raises(SystemExit, match="unknown parameter"):
        validate_steps.fit(data, fixed={"nope": 1.0})
