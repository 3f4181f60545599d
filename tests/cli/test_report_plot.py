"""`shapewise report`: a default sweep that shows misalignment, and a plot a reader
understands without the text (#15 items 7 and 9)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def sw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shapewise", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, check=False)


def test_the_default_sweep_shows_every_alignment_class(tmp_path: Path) -> None:
    r = sw("report", "--gpu", "h100", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    pts = rep["sweep"]["points"]
    assert [p["n"] for p in pts[:3]] == [1024, 1025, 1026]  # every N, not every 64th
    by_class = {c: [p for p in pts if p["aligned"] == c] for c in ("full", "16B", "none")}
    assert all(by_class.values())
    # misaligned N are slower than their aligned neighbours, and the sweep says so
    tput = {p["n"]: p["tflops"] for p in pts}
    assert tput[4097] < 0.9 * tput[4096]
    assert rep["sweep"]["worst"]["aligned"] == "none"
    # the wave arithmetic is there to mark: whole waves and nearly empty last waves
    fills = [p["last_wave_fill"] for p in by_class["full"]]
    assert max(fills) == 1.0 and min(fills) < 0.25


def test_the_plot_carries_its_labels_and_legend(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image  # matplotlib's own dependency

    png = tmp_path / "sweep.png"
    r = sw("report", "--gpu", "h100", "--plot", str(png), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"plot written to {png}" in r.stdout
    with Image.open(png) as im:
        assert im.size[0] >= 1000 and im.size[1] >= 600  # drawn, at a readable size
        meta = dict(im.text)
    said = json.loads(meta["Description"])
    assert said["ylim"][0] == 0.0  # an honest axis: the teeth keep their true size
    assert said["ylabel"] == "predicted bf16 TFLOP/s"
    assert said["xlabel"].startswith("N, columns of the GEMM (every 1 from 1024)")
    assert "M=4096" in meta["Title"] and "132 tiles per wave" in meta["Title"]
    legend = said["legend"]
    assert any(t.startswith("N a multiple of 64 (fully aligned)") for t in legend)
    assert any(t.startswith("N a multiple of 8, not of 64 (16-byte aligned only)")
               for t in legend)
    assert any(t.startswith("N not a multiple of 8 (misses 16-byte alignment)")
               for t in legend)
    assert "tiles fill whole waves (last wave 100% full)" in legend
    assert "N that starts a nearly empty wave (last wave < 25% full)" in legend
    assert any(t.startswith("dense bf16 peak") for t in legend)


def test_the_legend_sits_outside_the_data_at_any_step() -> None:
    pytest.importorskip("matplotlib")
    from shapewise.cli.report import build_report, sweep_figure
    from shapewise.hardware.catalog import get_gpu

    gpu = get_gpu("a100")
    for step in (1, 64):
        rep = build_report(gpu, "bf16", 4096, 4096, 1024, 8192, step)
        fig = sweep_figure(rep)
        try:
            fig.canvas.draw()
            ax = fig.axes[0]
            legend = ax.get_legend()
            box, axes_box = legend.get_window_extent(), ax.get_window_extent()
            assert box.y1 <= axes_box.y0  # wholly under the axes: never over a curve
            texts = [t.get_text() for t in legend.get_texts()]
            assert texts[0].startswith("N a multiple of 64")  # the curve has its entry
            assert ax.get_ylim()[0] == 0.0
            annotations = [c.get_text() for c in ax.texts]
            if step == 1:  # both effects named on the data
                assert any("misaligned" in a for a in annotations)
            assert any("a new wave" in a for a in annotations)
        finally:
            import matplotlib.pyplot as plt

            plt.close(fig)


def test_without_matplotlib_plot_is_a_one_line_error(tmp_path: Path) -> None:
    # a stand-in package that fails to import, first on the path
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib')\n")
    env = {"PYTHONPATH": str(fake), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "shapewise", "report", "--gpu", "h100",
                        "--n-step", "64", "--plot", str(tmp_path / "x.png")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env=env, check=False)
    assert r.returncode == 2
    assert r.stderr.strip() == ("shapewise report: error: --plot: needs matplotlib "
                                "(pip install 'shapewise[plot]')")
