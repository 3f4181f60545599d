"""Systems: the shipped nodes, how names find them, and strict parsing of system JSON."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import shapewise as sw
from shapewise.errors import InputError
from shapewise.hardware import system as system_mod
from shapewise.hardware.system import (
    get_system,
    list_systems,
    load_system,
    parse_system,
    system_to_dict,
)

SYSTEMS = Path(str(resources.files("shapewise.profiles"))) / "systems"


@pytest.fixture(autouse=True)
def _builtin_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHAPEWISE_SYSTEMS", raising=False)
    monkeypatch.delenv("SHAPEWISE_PROFILES", raising=False)


def _raw(sid: str = "hgx-h100") -> dict[str, Any]:
    return json.loads((SYSTEMS / f"{sid}.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------ shipped systems
@pytest.mark.parametrize("path", sorted(SYSTEMS.glob("*.json")), ids=lambda p: p.stem)
def test_every_system_loads_cites_its_figures_and_is_named_by_its_id(path: Path) -> None:
    s = load_system(path)
    assert s.id == path.stem
    for key in system_mod._SOURCED:
        if system_mod._value({f: getattr(s, f) for f in ("gpus_per_node", "scale_up",
                                                         "scale_out")}, key) is not None:
            assert s.references[s.sources[key]], key
    assert parse_system(json.loads(json.dumps(system_to_dict(s))), where=s.path) == s
    for gid in s.default_for:
        assert sw.get_gpu(gid).id == gid
    for fabric in ("scale_up", "scale_out"):
        cal = s.calibration[fabric]
        assert 0 < cal.peak_fraction < 1, "never 100% of the link"
        assert cal.provenance, f"{s.id}: {fabric} calibration without provenance"


def test_the_issue_list_ships() -> None:
    ids = {s.id for s in list_systems()}
    assert {"hgx-a100", "hgx-h100", "hgx-h200", "hgx-b200", "gb200-nvl72", "mi300x-8",
            "frontier"} <= ids
    for sid in ("hgx-a100", "hgx-h100", "hgx-h200", "hgx-b200", "mi300x-8", "mi325x-8"):
        assert get_system(sid).gpus_per_node == 8 == get_system(sid).domain_size
    nvl = get_system("gb200-nvl72")
    assert nvl.domain_size == 72 and nvl.scale_up.bandwidth_gbs == 900


def test_frontier_is_eight_gcds_and_four_slingshot_nics() -> None:
    f = get_system("frontier")
    assert f.gpu.id == "mi250x-gcd" and f.gpu.memory_gb == 64
    assert f.gpus_per_node == 8
    # 4 × 25 GB/s Slingshot-11 per node, one NIC per MI250X (two GCDs)
    assert f.scale_out.nics_per_gpu * f.gpus_per_node == 4
    assert f.scale_out.bandwidth_gbs * f.gpus_per_node == pytest.approx(100)
    assert f.scale_up.link_bandwidth_gbs == 200  # the two GCDs of one MI250X
    assert "docs.olcf.ornl.gov" in f.references[f.sources["scale_out.bandwidth_gbs"]]


@pytest.mark.parametrize(("name", "sid"), [
    ("h100", "hgx-h100"), ("H100-SXM5-80GB", "hgx-h100"), ("dgx-h100", "hgx-h100"),
    ("a100", "hgx-a100"), ("a100-sxm4-40gb", "hgx-a100"), ("h200", "hgx-h200"),
    ("b200", "hgx-b200"), ("gb200", "gb200-nvl72"), ("NVL72", "gb200-nvl72"),
    ("mi300x", "mi300x-8"), ("mi325x", "mi325x-8"), ("mi250x-gcd", "frontier"),
    ("mi250x", "frontier"), ("Frontier", "frontier"),
])
def test_names_and_gpus_find_their_usual_node(name: str, sid: str) -> None:
    assert get_system(name).id == sid
    assert sw.get_system(name) is get_system(name)


def test_gpu_objects_and_systems_pass_through() -> None:
    s = get_system("h100")
    assert get_system(s) is s
    assert get_system(sw.get_gpu("h100")) is s


def test_unknown_names_say_what_exists() -> None:
    with pytest.raises(InputError, match=r"system: unknown system 'dgx-h1000'.*hgx-h100"):
        get_system("dgx-h1000")
    with pytest.raises(InputError, match="system: no system ships for the GPU l4"):
        get_system("l4")
    with pytest.raises(InputError, match="system: expected"):
        get_system("")


def test_user_systems_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _raw()
    raw.update(id="my-h100-roce", aliases=["my cluster"], default_for=[])
    raw["scale_out"]["bandwidth_gbs"] = 25
    (tmp_path / "my-h100-roce.json").write_text(json.dumps(raw), encoding="utf-8")
    monkeypatch.setenv("SHAPEWISE_SYSTEMS", str(tmp_path))
    assert get_system("my cluster").scale_out.bandwidth_gbs == 25
    assert get_system("h100").id == "hgx-h100"  # default_for still the shipped node
    monkeypatch.setenv("SHAPEWISE_SYSTEMS", str(tmp_path / "absent"))
    with pytest.raises(InputError, match="SHAPEWISE_SYSTEMS"):
        list_systems()


def test_a_path_loads(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_raw("frontier")), encoding="utf-8")
    assert get_system(str(path)).id == "frontier"


# ------------------------------------------------------------------------ strict parsing
def _with(edit) -> dict[str, Any]:
    raw = copy.deepcopy(_raw())
    edit(raw)
    return raw


@pytest.mark.parametrize(("edit", "field"), [
    (lambda r: r.update(bogus=1), "'bogus'"),
    (lambda r: r["scale_up"].update(bandwith_gbs=1), "'scale_up.bandwith_gbs'"),
    (lambda r: r["scale_up"].update(bandwidth_gbs=-450), "'scale_up.bandwidth_gbs'"),
    (lambda r: r["scale_up"].update(bandwidth_gbs="450"), "'scale_up.bandwidth_gbs'"),
    (lambda r: r["scale_up"].update(domain_size=8.5), "'scale_up.domain_size'"),
    (lambda r: r["scale_up"].update(domain_size=4), "'scale_up.domain_size'"),
    (lambda r: r["scale_up"].update(topology="torus"), "'scale_up.topology'"),
    (lambda r: r["scale_up"].update(topology="direct"), "'scale_up.link_bandwidth_gbs'"),
    (lambda r: r["scale_up"].update(in_network_reduction=False),
     "'calibration.scale_up.nvls_peak_fraction'"),
    (lambda r: r["scale_out"].pop("latency_us"), "'scale_out.latency_us'"),
    (lambda r: r["calibration"]["scale_out"].update(peak_fraction=1.2),
     "'calibration.scale_out.peak_fraction'"),
    (lambda r: r["calibration"]["scale_up"].update(status="guessed"),
     "'calibration.scale_up.status'"),
    (lambda r: r["calibration"].pop("scale_out"), "'calibration.scale_out'"),
    (lambda r: r["calibration"]["scale_up"].pop("nvls_latency_us"),
     "'calibration.scale_up.nvls_latency_us'"),
    (lambda r: r["sources"].pop("scale_out.bandwidth_gbs"), "'sources.scale_out.bandwidth_gbs'"),
    (lambda r: r["sources"].update({"gpus_per_node": "nowhere"}), "'sources.gpus_per_node'"),
    (lambda r: r.update(gpu="h1000"), "'gpu'"),
    (lambda r: r.update(id="HGX H100"), "'id'"),
    (lambda r: r.update(schema_version=2), "'schema_version'"),
    (lambda r: r.update(aliases=["--"]), r"'aliases\[0\]'"),
])
def test_bad_fields_are_named(edit, field: str) -> None:
    with pytest.raises(InputError, match=f"here: field {field}"):
        parse_system(_with(edit), where="here")


def test_nan_and_non_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(_raw()).replace('"bandwidth_gbs": 450', '"bandwidth_gbs": NaN'),
                    encoding="utf-8")
    with pytest.raises(InputError, match=r"nan\.json"):
        load_system(path)
    with pytest.raises(InputError, match="here: a system must be a JSON object"):
        parse_system([1, 2], where="here")
    with pytest.raises(InputError, match="here: field 'scale_up' must be an object"):
        parse_system(_with(lambda r: r.update(scale_up=[1])), where="here")


# ------------------------------------------------------------------------ mi250x vs GCD
def test_mi250x_is_refused_as_one_device_and_names_the_gcd() -> None:
    with pytest.raises(InputError, match=r"gpu: 'mi250x'.*mi250x-gcd"):
        sw.get_gpu("mi250x")
    assert sw.get_gpu("mi250x-gcd").memory_gb == 64


def test_cli_refuses_mi250x_in_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "shapewise", "estimate", "llama-2-7b", "--gpu",
                        "mi250x"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "mi250x-gcd" in lines[0] and "Traceback" not in r.stderr
    ok = subprocess.run([sys.executable, "-m", "shapewise", "estimate", "llama-2-7b", "--gpu",
                         "mi250x-gcd", "--seq-len", "2048"], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0, ok.stderr
    # Llama-2-7B's unsharded training state does not fit one 64 GB GCD: it says so
    assert "exceeds the 64 GB" in ok.stdout


# ------------------------------------------------------------------ gpu= takes a system
def test_gpu_arguments_also_take_a_system() -> None:
    assert sw.get_gpu("dgx-h100").id == "h100-sxm"
    assert sw.get_gpu(get_system("frontier")).id == "mi250x-gcd"
    assert sw.get_gpu("NVL72").id == "gb200"
    with pytest.raises(InputError, match="gpu: 'mi250x' is two GPUs"):
        sw.get_gpu("mi250x")  # as a GPU it is refused; get_system('mi250x') is Frontier
    with pytest.raises(InputError, match="gpu: unknown GPU 'dgx-h1000'"):
        sw.get_gpu("dgx-h1000")
    shape = sw.ModelShape(arch="llama", hidden_size=1024, num_attention_heads=16,
                          num_hidden_layers=4, vocab_size=32000)
    assert sw.estimate(shape, gpu="dgx-h100", seq_len=1024).tokens_per_s == \
        sw.estimate(shape, gpu="h100", seq_len=1024).tokens_per_s


def test_cli_gpu_takes_a_system_name() -> None:
    r = subprocess.run([sys.executable, "-m", "shapewise", "estimate", "gpt2", "--gpu",
                        "dgx-h100", "--seq-len", "1024"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "h100-sxm" in r.stdout
