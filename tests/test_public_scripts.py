"""scripts/validate_public.py on a synthetic data folder shaped like ../shared/data.

The real files are never copied into the repository; these tests write a few rows with the
same columns so that the readers and the report are exercised on every machine.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import public_data  # noqa: E402
import validate_public  # noqa: E402

from shapewise import gemm_time  # noqa: E402

XLA_COLS = ["xla_device_key", "dtype", "b", "m", "n", "k", "time_us"]


def _write(folder: Path, name: str, cols: list[str], rows: list[list[object]]) -> None:
    with open(folder / name, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(rows)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A folder with every calibration file (mostly empty) and a small validation table."""
    _write(tmp_path, "vidur_fp16_linear.csv", ["gpu", "m", "n", "k", "time_us_median"],
           [["H100", 1024, 4096, 4096, 50.0]])
    _write(tmp_path, "neusight_fp32_gemm.csv", ["gpu", "m", "n", "k", "batch", "time_us"], [])
    _write(tmp_path, "kernelbench_fp32_matmul.csv",
           ["hardware", "m", "n", "k", "batch", "time_us_min"], [])
    _write(tmp_path, "deepbench_gemm.csv", ["gpu", "dtype", "m", "n", "k", "time_us"], [])
    _write(tmp_path, "tunableop_mi300x_fp16_gemm.csv",
           ["rowmajor_out_rows_tokens", "rowmajor_out_cols_features", "blas_k", "time_us"],
           [[256, 4096, 4096, 40.0]])
    _write(tmp_path, "deepgemm_h800_fp8.csv",
           ["layout", "m_per_group", "n", "k", "time_us_derived"], [])
    _write(tmp_path, public_data.VALIDATION_FILE, XLA_COLS, [
        ["sm_90", "bf16xbf16->bf16", 1, 1024, 4096, 4096, 45.0],
        ["sm_90", "bf16xbf16->bf16", 2, 512, 512, 512, 6.0],
        ["sm_90", "f32xf32->f32", 1, 1024, 4096, 4096, 110.0],
        ["gfx942", "bf16xbf16->bf16", 1, 256, 4096, 4096, 20.0],
        ["gfx942", "f8e4m3fnxf8e4m3fn->bf16", 1, 256, 4096, 4096, 12.0],  # not validated
    ])
    return tmp_path


def test_errors_are_the_model_against_each_row(data: Path) -> None:
    table, worst = validate_public.evaluate(data)
    by = {(r["gpu"], r["xla_dtype"]): r for r in table}
    assert set(by) == {("h100-sxm", "bf16xbf16->bf16"), ("h100-sxm", "f32xf32->f32"),
                       ("mi300x", "bf16xbf16->bf16")}
    row = by[("h100-sxm", "f32xf32->f32")]
    expected = (gemm_time(1024, 4096, 4096, gpu="h100-sxm", dtype="tf32") / 110e-6 - 1) * 100
    assert row["n"] == 1 and row["model_dtype"] == "tf32"
    assert row["median_signed_pct"] == pytest.approx(expected)
    assert row["median_abs_pct"] == pytest.approx(abs(expected))
    assert len(worst[("h100-sxm", "bf16xbf16->bf16")]) == 2


def test_cross_check_pairs_the_same_problem_in_both_sources(data: Path) -> None:
    rows = validate_public.cross_check(data)
    # the tf32 row has no 16-bit twin; the fp8 row is not read; the b=2 row has no twin
    got = {(r["gpu"], r["xla_dtype"], r["m"]): r for r in rows}
    assert set(got) == {("h100-sxm", "bf16xbf16->bf16", 1024), ("mi300x", "bf16xbf16->bf16", 256)}
    mi = got[("mi300x", "bf16xbf16->bf16", 256)]
    assert mi["calibration_us"] == pytest.approx(40.0)
    assert mi["validation_us"] == pytest.approx(20.0)
    assert mi["calibration_sources"] == ["tunableop_mi300x_fp16_gemm.csv"]
    text = "\n".join(validate_public.render_cross_check(rows))
    assert "| mi300x | `bf16xbf16->bf16` | 1 | 256×4096×4096 |" in text
    assert "0.50" in text  # validation / calibration
    assert "mi300x: 1 rows; validation / calibration median 0.50" in text


def test_the_validation_file_never_reaches_the_fit(data: Path) -> None:
    cal = list(public_data.read_calibration(data))
    assert {o.source for _, o in cal} == {"vidur_fp16_linear.csv",
                                          "tunableop_mi300x_fp16_gemm.csv"}


def test_write_replaces_only_the_marked_block(data: Path, tmp_path: Path) -> None:
    doc = tmp_path / "validation.md"
    doc.write_text(f"# head\n\n{validate_public.BEGIN}\nold\n{validate_public.END}\n\ntail\n")
    assert validate_public.main(["--data", str(data), "--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# head\n") and text.endswith("\ntail\n")
    assert "old" not in text
    assert "Problems measured by both a calibration file and the validation table" in text


def _run(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SHAPEWISE_DATA"}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                          text=True, check=False, env=env, cwd=cwd)


def test_without_data_it_says_so_and_exits_0(tmp_path: Path) -> None:
    # a copy of the scripts whose ../shared/data does not exist, as on a user's machine
    scripts = tmp_path / "repo" / "scripts"
    scripts.mkdir(parents=True)
    for name in ("validate_public.py", "public_data.py", "fit_public.py"):
        shutil.copy(SCRIPTS / name, scripts / name)
    for name in ("validate_public.py", "fit_public.py"):
        proc = _run(scripts / name, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "not found" in proc.stderr and proc.stdout == ""


def test_a_named_folder_without_the_data_is_an_error(tmp_path: Path) -> None:
    proc = _run(SCRIPTS / "validate_public.py", "--data", str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"validate_public.py: --data {tmp_path / 'nope'}: "
                                   f"no {public_data.VALIDATION_FILE} there")


SDPA_COLS = ["gpu", "impl", "dtype", "batch", "seqlen_q", "seqlen_k", "n_heads", "n_kv_heads",
             "head_dim", "head_dim_v", "causal", "mode", "time_us", "tflops",
             "flops_convention", "software", "notes", "source"]


def test_attention_rows_are_read_and_reported(data: Path) -> None:
    fa = "FA benchmark_flash_attention.py style: fwd=4*b*s^2*h*d (/2 if causal), bwd=2.5x"
    _write(data, "cudnn_frontend_sdpa.csv", SDPA_COLS, [
        ["H200", "cudnn", "bf16", 1, 4096, 4096, 64, 8, 128, 128, "True", "fwd", 465.0, 591,
         "runner", "cuDNN 9.19", "deterministic_bwd=False", "src-a"],
        ["H200", "cudnn", "bf16", 1, 4096, 4096, 64, 8, 128, 128, "True", "bwd", 1450.0, 474,
         "runner", "cuDNN 9.19", "deterministic_bwd=True", "src-a"],  # not the default
        ["H200 (inferred)", "pytorch_sdpa(flash2 backend)", "bf16", 4, 4096, 4096, 16, 16, 128,
         128, "False", "fwd", "", 362.03, fa, "", "TFLOP/s only", "src-b"],
        ["GB300", "cudnn", "mxfp8", 1, 4096, 4096, 64, 8, 128, 128, "True", "fwd", 300.0, 0,
         "runner", "", "", "src-c"],
        ["B200", "pyt_math", "bf16", 1, 32768, 32768, 128, 8, 128, 128, "True", "fwd", "inf",
         0, "runner", "", "", "src-d"],
    ])
    public_data.SKIPPED.clear()
    obs = list(public_data.read_attention(data))
    assert [(o.gpu, o.backend, o.backward) for o in obs] == [
        ("h200", "cudnn", False), ("h200", "sdpa-flash", False)]
    # a TFLOP/s-only row is converted with its file's convention: 4·b·s²·h·d / TFLOP/s
    assert obs[1].time_s == pytest.approx(4 * 4 * 4096**2 * 16 * 128 / 362.03e12)
    assert public_data.SKIPPED["cudnn_frontend_sdpa.csv: deterministic backward"] == 1
    text = validate_public.render_attention(data)
    assert "| h200 | cudnn | bf16 | fwd | 1 |" in text
    assert "pairs of backends measured on one problem" in text


def test_an_excluded_attention_group_is_shown_with_its_reason(data: Path) -> None:
    # ten B200 math-path backward rows (excluded: faster than the fp32 peak allows) and ten
    # forward rows (held to the target): the error is printed either way, only the label moves
    rows = []
    for i, s in enumerate((512, 1024, 2048, 4096, 8192) * 2):
        for mode, t in (("fwd", 1e6), ("bwd", 1e6)):
            rows.append(["B200", "pyt_math", "bf16", 1, s, s, 128, 8, 128, 128, "True", mode,
                         t, 0, "runner", "", "", f"src-{i}"])
    _write(data, "cudnn_frontend_sdpa.csv", SDPA_COLS, rows)
    text = validate_public.render_attention(data)
    assert ("b200", "sdpa-math", "bwd") in validate_public.EXCLUDED_ATTENTION_GROUPS
    bwd = [ln for ln in text.splitlines() if ln.startswith("| b200 | sdpa-math | bf16 | bwd |")]
    fwd = [ln for ln in text.splitlines() if ln.startswith("| b200 | sdpa-math | bf16 | fwd |")]
    assert bwd and bwd[0].endswith("| excluded (below) |")
    assert fwd and fwd[0].endswith("| **missed** |")  # 1 s per call: far off, and not excused
    assert "Excluded from the target: b200 sdpa-math bwd:" in text
