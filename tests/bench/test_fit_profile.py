"""shapewise fit: a profile from bench files, and the files it must refuse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import shapewise as sw
from shapewise.bench.fit import fit_profile
from shapewise.errors import InputError

SHAPES = [(m, n, k) for m in (256, 1024, 4096) for n in (512, 2048, 8192)
          for k in (256, 1024, 4096)]


def bench_doc(device: str, device_name: str, *, gpu: str = "h100", dtype: str = "bf16",
              scale: float = 1.1) -> dict:
    """A bench document whose GEMM times are ``scale`` × the shipped model's."""
    records = []
    for m, n, k in SHAPES:
        t = sw.gemm_time(m, n, k, gpu=gpu, dtype=dtype) * scale
        records.append({"key": f"gemm:m={m},n={n},k={k},b=1,dtype={dtype}", "kind": "gemm",
                        "backend": "blas", "dtype": dtype, "m": m, "n": n, "k": k, "batch": 1,
                        "median_s": t, "status": "ok"})
    return {"format": "shapewise-bench/1",
            "provenance": {"device": device, "device_name": device_name},
            "run": {"device": device, "dtype": dtype, "mode": "full"},
            "measurements": records}


def write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def h100_file(tmp_path: Path) -> Path:
    return write(tmp_path / "h100.json", bench_doc("cuda:0", "NVIDIA H100 80GB HBM3"))


def test_fit_writes_a_measured_profile_that_loads(h100_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    report = fit_profile(h100_file, out=out)
    assert report.profile.id == "h100-sxm-measured"
    loaded = sw.load_profile(out)
    assert loaded.calibration is not None and loaded.calibration.status == "fitted"
    # the times were 1.1 x the model: the fit finds them again
    t = sw.gemm_time(4096, 8192, 4096, gpu=loaded, dtype="bf16")
    assert t == pytest.approx(1.1 * sw.gemm_time(4096, 8192, 4096, gpu="h100"), rel=0.05)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind


def test_out_never_replaces_the_measurements(h100_file: Path, tmp_path: Path) -> None:
    before = h100_file.read_text()
    with pytest.raises(InputError, match=r"^--out: .* is one of the bench files"):
        fit_profile(h100_file, out=h100_file)
    other = write(tmp_path / "other.json", bench_doc("cuda:0", "NVIDIA H100 80GB HBM3"))
    with pytest.raises(InputError, match=r"^--out: .* holds bench measurements"):
        fit_profile(h100_file, out=other)
    assert h100_file.read_text() == before


@pytest.mark.parametrize("out,match", [("missing/p.json", "--out: folder"),
                                       (".", "--out: . is a folder")])
def test_out_errors_name_the_option(h100_file: Path, tmp_path: Path, out: str,
                                    match: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=rf"^{match}"):
        fit_profile(h100_file, out=out)


def test_files_of_different_devices_are_not_mixed(h100_file: Path, tmp_path: Path) -> None:
    cpu = write(tmp_path / "cpu.json", bench_doc("cpu", "cpu", gpu="h100", dtype="bf16"))
    with pytest.raises(InputError, match=r"^bench_file: .*cpu.json was measured on 'cpu'"):
        fit_profile([h100_file, cpu])
    a100 = write(tmp_path / "a100.json", bench_doc("cuda:0", "NVIDIA A100-SXM4-80GB"))
    with pytest.raises(InputError, match=r"fit one device at a time"):
        fit_profile([h100_file, a100])
    tf32 = write(tmp_path / "tf32.json",
                 bench_doc("cuda:0", "NVIDIA H100 80GB HBM3", dtype="tf32"))
    report = fit_profile([h100_file, tf32])  # one device, two dtypes: the intended use
    assert {"bf16", "tf32"} <= set(report.profile.calibration.provenance["efficiency_origin"])


def test_gpu_must_not_contradict_the_file(h100_file: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^--gpu: .* measured on 'NVIDIA H100 80GB HBM3' "
                                         r"\(h100-sxm\), not on a100-sxm-80gb"):
        fit_profile(h100_file, gpu="a100")
    assert fit_profile(h100_file, gpu="H100-SXM5-80GB").profile.id == "h100-sxm-measured"
    cpu = write(tmp_path / "cpu.json", bench_doc("cpu", "cpu", dtype="bf16"))
    with pytest.raises(InputError, match=r"^--gpu: .*cpu.json was measured on the CPU"):
        fit_profile(cpu, gpu="h100")
    # a GPU the catalog does not know: --gpu names the datasheet to use
    odd = write(tmp_path / "odd.json", bench_doc("cuda:0", "NVIDIA Hypothetical X1"))
    assert fit_profile(odd, gpu="h100").profile.id == "h100-sxm-measured"


def test_cli_refuses_in_one_line(h100_file: Path, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "shapewise", "fit", str(h100_file), "--out",
                        str(h100_file)], capture_output=True, text=True, cwd=tmp_path,
                       check=False)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--out:" in r.stderr


def test_refitting_from_an_earlier_fit_or_a_datasheet_file(h100_file: Path,
                                                           tmp_path: Path) -> None:
    first = tmp_path / "p1.json"
    fit_profile(h100_file, out=first)
    again = fit_profile(h100_file, gpu=sw.load_profile(first), out=tmp_path / "p2.json")
    assert again.profile.id == "h100-sxm-measured"
    cpu = write(tmp_path / "cpu.json", bench_doc("cpu", "cpu", dtype="bf16"))
    with pytest.raises(InputError, match=r"^--profile: .*cpu.json was measured on the CPU"):
        fit_profile(cpu, gpu=sw.load_profile(first))


def test_fit_fits_each_measured_attention_backend(tmp_path: Path) -> None:
    """Fused-attention timings of each backend set that backend's parameters in the
    profile's calibration.attention_backends; the CPU-only math path is not fitted."""
    doc = bench_doc("cuda:0", "NVIDIA H100 80GB HBM3")
    truth = {"flash": ("sdpa-flash", 1.3), "cudnn": ("cudnn", 0.9)}
    for bench_name, (backend, scale) in truth.items():
        for s in (1024, 2048, 4096, 8192):
            for causal in (False, True):
                for backward in (False, True):
                    t = sw.attention_time(batch=2, heads=16, seq_len=s, head_dim=128,
                                          gpu="h100", causal=causal, backward=backward,
                                          backend=backend) * scale
                    doc["measurements"].append({
                        "kind": "attention", "backend": bench_name, "dtype": "bf16",
                        "batch": 2, "heads": 16, "kv_heads": 16, "seq_len": s,
                        "head_dim": 128, "causal": causal, "backward": backward,
                        "median_s": t, "status": "ok"})
    doc["measurements"].append({  # the math path: priced by the GEMM model, not fitted
        "kind": "attention", "backend": "math", "dtype": "bf16", "batch": 2, "heads": 16,
        "seq_len": 1024, "head_dim": 128, "causal": True, "backward": False,
        "median_s": 1.0, "status": "ok"})
    out = tmp_path / "profile.json"
    report = fit_profile(write(tmp_path / "h100.json", doc), out=out)
    assert set(report.attention) == {"sdpa-flash", "cudnn"}
    loaded = sw.load_profile(out)
    assert set(loaded.calibration.attention_backends) == {"sdpa-flash", "cudnn"}
    for backend, scale in truth.values():
        for backward in (False, True):
            kw = dict(batch=2, heads=16, seq_len=4096, head_dim=128, causal=True,
                      backward=backward, backend=backend)
            got = sw.attention_time(gpu=loaded, **kw)
            # the shipped H100 parameters scaled by ``scale``, within the fit's tolerance
            assert got == pytest.approx(scale * sw.attention_time(gpu="h100", **kw), rel=0.06)
