"""scripts/fit_decode.py and the decode section of validate_public.py, on synthetic rows.

The real vidur file is never copied here: these tests write rows with its columns.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import fit_decode  # noqa: E402
import public_data  # noqa: E402
import validate_decode  # noqa: E402

from shapewise import get_gpu  # noqa: E402
from shapewise.cost.attention_decode import (  # noqa: E402
    DECODE_KEYS,
    DecodeParams,
    decode_shape,
    kernel_time,
)

COLS = ["gpu", "dtype", "phase", "batch", "n_q_heads", "n_kv_heads", "head_dim", "q_len",
        "kv_len", "kv_cache_len_before", "causal", "time_us_median", "time_us_min",
        "backend", "method", "source"]
TRUE = {"fixed_us": 3.0, "hbm_fraction": 0.75, "sm_stream_share": 1.3, "cta_us": 2.0,
        "combine_us": 5.0}


def _synthetic(folder: Path) -> None:
    """Decode rows priced by the model itself with TRUE parameters, plus one prefill row."""
    gpu = get_gpu("a100-sxm-80gb")
    p = DecodeParams(**TRUE)
    rate = gpu.peak_flops("fp16") * 0.8 / gpu.sm_count
    rows = [["A100", "fp16", "prefill", 1, 32, 4, 128, 512, 512, 0, "True", 300.0, 290.0,
             "FA", "K", "src"]]
    for b in (1, 2, 3, 5, 8, 12, 16, 24, 32, 48, 64, 96, 128):
        for cache in (32, 200, 700, 1500, 2600, 4032):
            sh = decode_shape(gpu, batch=b, heads=32, kv_heads=4, seq_len=1, keys=cache + 1,
                              head_dim=128, head_dim_v=128, dtype="fp16", kv_capacity=4033)
            t = kernel_time(sh, p, bandwidth=gpu.bandwidth, sm_rate=rate)[0]
            rows.append(["A100", "fp16", "decode", b, 32, 4, 128, 1, cache, cache, "False",
                         round(t * 1e6, 3), 0, "FA", "K", "src"])
    with open(folder / "vidur_a100_attention.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLS)
        w.writerows(rows)


def test_reader_counts_the_appended_token(tmp_path: Path) -> None:
    _synthetic(tmp_path)
    obs = list(public_data.read_vidur_decode(tmp_path))
    assert len(obs) == 13 * 6 and all(o.seq_len == 1 for o in obs)
    assert {o.seq_len_kv for o in obs} == {33, 201, 701, 1501, 2601, 4033}
    assert [o.seq_len for o in public_data.read_vidur_attention(tmp_path)] == [512]


def test_fit_recovers_the_parameters_it_was_given(tmp_path: Path) -> None:
    _synthetic(tmp_path)
    obs = list(public_data.read_vidur_decode(tmp_path))
    prob = fit_decode.Problem(obs, fit_decode.kv_capacity(obs))
    # the synthetic rows used another MMA rate: the data is memory-bound, so it does not show
    x = prob.fit(np.arange(len(obs)))
    got = dict(zip(DECODE_KEYS, x, strict=True))
    for k in ("hbm_fraction", "sm_stream_share"):
        assert got[k] == pytest.approx(TRUE[k], rel=0.02), k
    err = np.abs(prob.predict(x) / prob.measured - 1)
    assert np.median(err) < 0.01


def test_decode_section_reports_every_batch_range(tmp_path: Path) -> None:
    _synthetic(tmp_path)
    text = validate_decode.render_decode(tmp_path)
    assert text is not None and text.startswith(validate_decode.DBEGIN)
    for lo, hi in fit_decode.BATCH_RANGES:
        assert f"| {lo}-{hi} |" in text
    assert "decode rows of `vidur_a100_attention.csv`" in text


def test_without_data_it_says_so_and_exits_0(tmp_path: Path) -> None:
    scripts = tmp_path / "repo" / "scripts"
    scripts.mkdir(parents=True)
    for name in ("fit_decode.py", "public_data.py"):
        shutil.copy(SCRIPTS / name, scripts / name)
    env = {k: v for k, v in os.environ.items() if k != "SHAPEWISE_DATA"}
    proc = subprocess.run([sys.executable, str(scripts / "fit_decode.py")], capture_output=True,
                          text=True, check=False, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "not found" in proc.stderr and proc.stdout == ""
