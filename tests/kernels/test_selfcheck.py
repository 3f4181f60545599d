"""python -m shapewise.kernels.selfcheck: correct first, before a sweep times anything."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from shapewise.kernels import CheckResult, gemm, selfcheck


def test_cpu_kernels_pass(capsys: pytest.CaptureFixture) -> None:
    assert selfcheck.main(["--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("\nok    ") + out.startswith("ok    ") == 4
    assert "selfcheck on cpu: 4 of 4 passed" in out


def test_a_wrong_kernel_fails_the_check(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    def half_written(a, b, out=None):  # leaves the last row of the poisoned output unwritten
        import torch

        res = torch.matmul(a, b)
        out[..., :-1, :] = res[..., :-1, :]
        return out

    monkeypatch.setattr(gemm, "gemm", half_written)
    assert selfcheck.main(["--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  gemm fp32" in out and "selfcheck on cpu: 2 of 4 passed" in out


def test_the_gpu_list_covers_every_swept_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selfcheck, "has_tf32", lambda device: True)  # an H100's answer
    names = [name for name, _ in selfcheck.checks("cuda:0")]  # built, not run
    for dt in ("bf16", "fp16", "tf32"):
        assert f"gemm {dt}" in names
    for be in ("flash", "efficient", "cudnn", "math"):
        assert any(n.startswith(f"attention[{be}]") for n in names)
    assert "triton matmul bf16" in names and "triton attention bf16" in names


@pytest.mark.parametrize("error,used", [(1e-7, False), (2e-4, True)])
def test_tf32_is_proved_by_its_rounding(monkeypatch: pytest.MonkeyPatch, error: float,
                                        used: bool) -> None:
    monkeypatch.setattr(gemm, "check", lambda **kw: CheckResult(
        name="gemm tf32", rel_error=error, tolerance=2e-3))
    assert selfcheck.tf32_is_used("cuda:0").ok is used
