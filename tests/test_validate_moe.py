"""scripts/validate_moe.py on a synthetic data folder (and on none)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "validate_moe.py"
HEADER = ("gpu,dtype,kernel,layout,groups,m_per_group,n,k,tflops,mem_bw_GBps,"
          "speedup_vs_internal_cutlass36,time_us_derived,note,source\n")


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("validate_moe", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_without_data_it_says_so_and_exits_0(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert _load().main(["validate_moe.py", str(tmp_path)]) == 0
    assert "not found" in capsys.readouterr().out


def test_grouped_rows_are_priced_as_batched_gemms(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from shapewise.cost.price import price
    from shapewise.ops import Gemm

    t = price(Gemm(m=512, n=4096, k=7168, batch=2, dtype="fp8"), "h100") * 1e6
    (tmp_path / "deepgemm_h800_fp8.csv").write_text(
        HEADER
        + f"H800,fp8,DeepGEMM,Grouped GEMMs for MoE models (masked layout),2,512,4096,7168,"
          f"1,1,1x,{t * 1.1:.3f},synthetic,test\n"
        + "H800,fp8,DeepGEMM,Normal GEMMs for dense models,1,64,2112,7168,1,1,1x,9.41,x,y\n")
    assert _load().main(["validate_moe.py", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 grouped rows: median |error| 9.1%" in out  # predicted 1/1.1 of measured
    assert "fp8 pairs skipped" in out


def test_fp8_attention_fit_pairs_the_same_problem(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location(
        "fit_fp8_attention", SCRIPT.parent / "fit_fp8_attention.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    head = ("gpu,impl,dtype,batch,seqlen_q,seqlen_k,n_heads,n_kv_heads,head_dim,head_dim_v,"
            "causal,mode,time_us,tflops\n")
    rows = ["GB200,cudnn,bf16,1,4096,4096,64,8,128,128,True,fwd,,1000",
            "GB200,cudnn,fp8,1,4096,4096,64,8,128,128,True,fwd,,1500",
            "GB200,cudnn,mxfp8,1,4096,4096,64,8,128,128,True,fwd,,9999",  # another recipe
            "GB200,cudnn,fp8,2,4096,4096,64,8,128,128,True,fwd,,1600"]  # no bf16 twin
    (tmp_path / "cudnn_frontend_sdpa.csv").write_text(head + "\n".join(rows) + "\n")
    assert dict(mod.speedups(tmp_path)) == {"fwd": [1.5]}
    assert mod.main(["x", str(tmp_path / "absent")]) == 0
    assert "not found" in capsys.readouterr().out
