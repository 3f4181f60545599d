"""The GPU catalog: shipped profiles, alias lookup, and the validator against hostile files."""

from __future__ import annotations

import copy
import json
import pickle
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shapewise.errors import InputError
from shapewise.hardware import catalog
from shapewise.hardware.catalog import (
    GPU,
    get_gpu,
    gpu_to_dict,
    list_gpus,
    load_profile,
    parse_profile,
)

# the profiles as installed (the wheel ships profiles/ as shapewise.profiles)
PROFILES = Path(str(resources.files("shapewise.profiles")))

ALL_IDS = {
    "v100-sxm2", "a100-sxm-40gb", "a100-sxm-80gb", "a100-pcie-80gb", "a10", "a10g", "l4",
    "l40s", "rtx-3090", "rtx-4090", "h100-sxm", "h100-pcie", "h100-nvl", "h200", "gh200",
    "b200", "gb200", "b300", "gb300", "mi100", "mi210", "mi250x-gcd", "mi300x", "mi325x",
}


@pytest.fixture(autouse=True)
def _builtin_catalog_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the shipped profiles only, whatever the developer's environment says."""
    monkeypatch.delenv("SHAPEWISE_PROFILES", raising=False)


def _h100_raw() -> dict[str, Any]:
    return json.loads((PROFILES / "h100-sxm.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------ shipped profiles
def test_profile_folder_is_the_packaged_one() -> None:
    assert sorted(p.name for p in PROFILES.glob("*.json")) == sorted(
        p.name for p in catalog._builtin_profile_paths()
    )


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.json")), ids=lambda p: p.stem)
def test_every_profile_loads_and_is_named_by_its_id(path: Path) -> None:
    gpu = load_profile(path)
    assert gpu.id == path.stem
    assert gpu.schema_version == catalog.SCHEMA_VERSION
    assert gpu.ctas_per_sm == 1
    assert gpu.tdp_w is not None and gpu.tdp_w > 0


def test_list_gpus_has_all() -> None:
    gpus = list_gpus()
    assert [g.id for g in gpus] == sorted(ALL_IDS)
    assert len(gpus) == len(ALL_IDS) == 24
    assert all(isinstance(g, GPU) for g in gpus)


@pytest.mark.parametrize("gpu", list_gpus(), ids=lambda g: g.id)
def test_profile_round_trips_through_gpu_to_dict(gpu: GPU) -> None:
    assert parse_profile(json.loads(json.dumps(gpu_to_dict(gpu))), where=gpu.path) == gpu


# ------------------------------------------------------------------------------ lookup
@pytest.mark.parametrize(
    ("name", "gid"),
    [
        ("h100", "h100-sxm"),
        ("H100", "h100-sxm"),
        ("H100-SXM5-80GB", "h100-sxm"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("a100", "a100-sxm-80gb"),
        ("a100-80gb", "a100-sxm-80gb"),
        ("A100-80GB", "a100-sxm-80gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
        ("a100-sxm4-40gb", "a100-sxm-40gb"),
        ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"),
        ("mi250x-gcd", "mi250x-gcd"),
        ("MI250X-GCD", "mi250x-gcd"),
        ("mi250x gcd", "mi250x-gcd"),
        ("Frontier", "mi250x-gcd"),
        ("gfx942", "mi300x"),
        ("AMD Instinct MI300X", "mi300x"),
        ("sm_100", "b200"),
        ("SM100", "b200"),
        ("b200-sxm", "b200"),
        ("h100 pcie", "h100-pcie"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("Tesla V100-SXM2-32GB", "v100-sxm2"),
        ("  l40s  ", "l40s"),
    ],
)
def test_aliases_resolve_case_insensitively(name: str, gid: str) -> None:
    assert get_gpu(name).id == gid


def test_a_gpu_passes_through_get_gpu() -> None:
    gpu = get_gpu("h100")
    assert get_gpu(gpu) is gpu


def test_get_gpu_loads_a_profile_path() -> None:
    assert get_gpu(str(PROFILES / "l4.json")).id == "l4"


def test_unknown_gpu_lists_close_names() -> None:
    with pytest.raises(InputError) as info:
        get_gpu("h1000")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith("gpu: unknown GPU 'h1000'")
    assert "h100-sxm" in message


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_empty_or_non_string_gpu_name_is_an_input_error(bad: Any) -> None:
    with pytest.raises(InputError, match="gpu"):
        get_gpu(bad)


def test_no_alias_names_two_gpus() -> None:
    owner: dict[str, str] = {}
    for gpu in list_gpus():
        for alias in {gpu.id, gpu.name, *gpu.aliases}:
            key = catalog._norm(alias)
            assert owner.setdefault(key, gpu.id) == gpu.id, (
                f"{alias!r} of {gpu.id} also names {owner[key]}"
            )


def test_aliases_are_lower_case() -> None:
    for gpu in list_gpus():
        assert all(a == a.lower() for a in gpu.aliases), gpu.id


# --------------------------------------------------------------------------- the facts
def test_every_spec_field_has_a_source_that_resolves() -> None:
    for gpu in list_gpus():
        fields = [*catalog._SOURCED_FIELDS, "tdp_w"]
        for name in fields:
            key = gpu.sources.get(name)
            assert key, f"{gpu.id}: {name} has no source"
            assert key in gpu.references, f"{gpu.id}: source {key!r} of {name} is not a reference"
        for text in gpu.references.values():  # each traced to the project's reference,
            # or to a public page cited by its address (GPUs newer than that reference: B300)
            assert ("via shared/reference/gpu_specs.md" in text
                    or "via shared/reference/co-design.md" in text
                    or "https://" in text), (gpu.id, text)


# dense FP16/BF16 tensor FLOP per clock per SM/CU, from gpu_specs.md's conventions
_FLOP_PER_CLK = {
    "volta": 1024, "ampere-sm_80": 2048, "ampere-sm_86": 1024, "ada": 1024, "hopper": 4096,
    "blackwell": 8192, "cdna1": 1024, "cdna2": 1024, "cdna3": 2048,
}
_HALF_RATE = {"a10g", "rtx-3090", "rtx-4090"}  # FP32-accumulate at half rate


@pytest.mark.parametrize("gpu", list_gpus(), ids=lambda g: g.id)
def test_peaks_are_dense(gpu: GPU) -> None:
    """SMs x clock x FLOP/clk bounds the 16-bit peak: a sparse (2x) figure cannot fit.

    The lower bound allows for the tensor-rated clock below boost (H100 NVL: 0.87).
    """
    key = gpu.arch if gpu.arch != "ampere" else f"ampere-{gpu.arch_code}"
    full_rate = gpu.sm_count * gpu.boost_clock_mhz * 1e6 * _FLOP_PER_CLK[key] / 1e12
    ceiling = full_rate / 2 if gpu.id in _HALF_RATE else full_rate
    peak = gpu.peak_tflops["fp16"]
    assert 0.85 * ceiling <= peak <= 1.01 * ceiling, (peak, ceiling)
    # other types relative to the full 16-bit rate (GeForce int8 is not halved)
    for dtype, factor in (("bf16", 1), ("tf32", 0.5), ("fp8", 2), ("int8", 2)):
        if dtype in gpu.peak_tflops:
            assert gpu.peak_tflops[dtype] <= factor * full_rate * 1.01, dtype


def test_known_dense_values() -> None:
    h100 = get_gpu("h100")
    assert h100.peak_tflops["bf16"] == 989.4  # the datasheet prints 1979 with sparsity
    assert h100.peak_tflops["fp8"] == 1978.9
    assert h100.peak_flops("bfloat16") == pytest.approx(989.4e12)
    assert get_gpu("a100").peak_tflops["bf16"] == 312
    assert get_gpu("b200").peak_tflops["bf16"] == 2250
    assert get_gpu("mi300x").peak_tflops["bf16"] == 1307.4
    assert get_gpu("mi300x").peak_tflops["tf32"] == 653.7  # the xf32 figure
    assert get_gpu("mi100").peak_tflops["bf16"] == 92.3  # half of fp16 184.6
    assert get_gpu("rtx-4090").peak_tflops["bf16"] == 165.2  # FP32-accumulate rate


@pytest.mark.parametrize(
    ("gid", "fp32"),
    [("mi100", 46.1), ("mi210", 45.3), ("mi250x-gcd", 47.9),
     ("mi300x", 163.4), ("h100-sxm", 66.9), ("a100-sxm-80gb", 19.5), ("v100-sxm2", 15.7)],
)
def test_fp32_is_the_best_full_precision_gemm_rate(gid: str, fp32: float) -> None:
    assert get_gpu(gid).peak_tflops["fp32"] == fp32


def test_missing_math_is_missing() -> None:
    for gid in ("a100-sxm-40gb", "a100-sxm-80gb", "a100-pcie-80gb"):
        assert not get_gpu(gid).supports("fp8")
    with pytest.raises(InputError, match="no fp8"):
        get_gpu("a100").peak_flops("fp8")
    v100 = get_gpu("v100-sxm2")
    assert not any(v100.supports(d) for d in ("bf16", "tf32", "fp8"))
    for gid in ("mi100", "mi210", "mi250x-gcd"):
        assert not get_gpu(gid).supports("tf32") and not get_gpu(gid).supports("fp8"), gid
    for gid in ("mi300x", "mi325x", "h100-sxm", "l40s", "b200"):
        assert get_gpu(gid).supports("fp8"), gid


def test_alignment_tiles_and_links_follow_the_architecture() -> None:
    for gpu in list_gpus():
        assert gpu.alignment_bytes == (16 if gpu.arch == "volta" else 128), gpu.id
        areas = [m * n for m, n in gpu.gemm_tiles]
        assert areas == sorted(areas, reverse=True), f"{gpu.id}: tiles not largest first"
        assert set(gpu.attention_tiles) == {64, 128, 256}, gpu.id
        if gpu.link_bandwidth_gbs == 0:
            assert gpu.link_name == "none (PCIe only)", gpu.id
        assert gpu.warp_size == (64 if gpu.vendor == "amd" else 32), gpu.id
    assert get_gpu("h100").attention_tiles[128] == (128, 128)  # FA3 causal bf16
    assert get_gpu("a100").attention_tiles[128] == (128, 64)  # FA2 sm80
    assert get_gpu("l4").attention_tiles[128] == (64, 64)  # FA2 sm89, causal
    assert get_gpu("mi300x").gemm_tiles[:2] == ((256, 256), (256, 224))
    assert get_gpu("a10").link_bandwidth_gbs == 0


def test_str_is_one_readable_line() -> None:
    assert str(get_gpu("h100")) == (
        "NVIDIA H100 SXM5 80GB (sm_90, 132 SMs, 989.4 TFLOP/s bf16, 80 GB at 3.35 TB/s)"
    )
    assert "304 CUs" in str(get_gpu("mi300x"))


# --------------------------------------------------------------------- hostile profiles
def _text_with(**changes: Any) -> str:
    raw = _h100_raw()
    for key, value in changes.items():
        if value is _DROP:
            del raw[key]
        else:
            raw[key] = value
    return json.dumps(raw)


_DROP = object()
_VALID = (PROFILES / "h100-sxm.json").read_text(encoding="utf-8")


class _Thing:
    """Something to pickle: a profile must never be unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled!",))


_HOSTILE: list[tuple[str, bytes, str | None]] = [
    # (case, file content, the field the message must name, or None when JSON itself is bad)
    ("truncated", _VALID[: len(_VALID) // 2].encode(), None),
    ("nan", _VALID.replace('"memory_gb": 80', '"memory_gb": NaN').encode(), None),
    ("infinity", _VALID.replace('"l2_mb": 50', '"l2_mb": Infinity').encode(), None),
    ("minus_infinity", _VALID.replace('"l2_mb": 50', '"l2_mb": -Infinity').encode(), None),
    ("1e999", _VALID.replace('"memory_bandwidth_tbs": 3.35', '"memory_bandwidth_tbs": 1e999')
     .encode(), None),
    ("5000_digit_int", _VALID.replace('"sm_count": 132', '"sm_count": ' + "9" * 5000).encode(),
     None),
    ("400_digit_int", _text_with(sm_count=10**400).encode(), "sm_count"),
    ("string_sm_count", _text_with(sm_count="132").encode(), "sm_count"),
    ("bool_sm_count", _text_with(sm_count=True).encode(), "sm_count"),
    ("list_memory", _text_with(memory_gb=[80]).encode(), "memory_gb"),
    ("float_warp", _text_with(warp_size=32.5).encode(), "warp_size"),
    ("negative_bandwidth", _text_with(memory_bandwidth_tbs=-3.35).encode(),
     "memory_bandwidth_tbs"),
    ("negative_link", _text_with(link_bandwidth_gbs=-1).encode(), "link_bandwidth_gbs"),
    ("zero_sms", _text_with(sm_count=0).encode(), "sm_count"),
    ("missing_field", _text_with(l2_mb=_DROP).encode(), "l2_mb"),
    ("missing_tiles", _text_with(gemm_tiles=_DROP).encode(), "gemm_tiles"),
    ("unknown_field", _text_with(sm_cont=132).encode(), "sm_cont"),
    ("wrong_schema", _text_with(schema_version=2).encode(), "schema_version"),
    ("string_schema", _text_with(schema_version="1").encode(), "schema_version"),
    ("sparse_dtype", _text_with(peak_tflops={"bf16_sparse": 1979}).encode(),
     "peak_tflops.bf16_sparse"),
    ("zero_peak", _text_with(peak_tflops={"bf16": 0}).encode(), "peak_tflops.bf16"),
    ("empty_peaks", _text_with(peak_tflops={}).encode(), "peak_tflops"),
    ("tile_three", _text_with(gemm_tiles=[[128, 128, 64]]).encode(), "gemm_tiles[0]"),
    ("tile_bool", _text_with(gemm_tiles=[[True, 128]]).encode(), "gemm_tiles[0]"),
    ("head_dim_superscript", _text_with(attention_tiles={"²": [64, 64]}).encode(),
     "attention_tiles"),
    ("head_dim_huge", _text_with(attention_tiles={"1" * 5000: [64, 64]}).encode(),
     "attention_tiles"),
    ("bad_vendor", _text_with(vendor="intel").encode(), "vendor"),
    ("bad_id", _text_with(id="../../etc/passwd").encode(), "id"),
    ("alias_not_string", _text_with(aliases=["h100", 7]).encode(), "aliases"),
    ("alias_punctuation", _text_with(aliases=["---"]).encode(), "aliases[0]"),
    ("source_missing", _text_with(sources={"sm_count": "nvidia-h100-datasheet"}).encode(),
     "sources.boost_clock_mhz"),
    ("tdp_unsourced", _text_with(sources={k: v for k, v in _h100_raw()["sources"].items()
                                          if k != "tdp_w"}).encode(), "sources.tdp_w"),
    ("source_dangling", _VALID.replace('"l2_mb": "hopper-whitepaper"', '"l2_mb": "nowhere"')
     .encode(), "sources.l2_mb"),
    ("empty_reference", _text_with(references={**_h100_raw()["references"], "cuda-guide": " "})
     .encode(), "references.cuda-guide"),
    ("calibration_not_object", _text_with(calibration=[1]).encode(), "calibration"),
    ("calibration_missing_status", _text_with(calibration={"gemm_efficiency": {"bf16": 0.8}})
     .encode(), "calibration."),
    ("duplicate_key", _VALID.replace('"l2_mb": 50,', '"l2_mb": 50, "l2_mb": 60,').encode(),
     "l2_mb"),
    ("deep_nesting", b"[" * 100_000 + b"]" * 100_000, None),
    ("lone_surrogate", _VALID.replace('"name": "NVIDIA', '"name": "\\ud800NVIDIA').encode(), None),
    ("pickle", pickle.dumps(_Thing()), None),
    ("pickle_protocol_0", pickle.dumps(_Thing(), protocol=0), None),
    ("pickled_gpu", pickle.dumps({"gpu": "h100", "sm_count": 132}), None),
    ("binary_garbage", bytes(range(256)) * 4, None),
    ("utf8_bom", b"\xef\xbb\xbf" + _VALID.encode(), None),
    ("utf16", _VALID.encode("utf-16"), None),
    ("empty_file", b"", None),
    ("whitespace_only", b"  \n\t ", None),
    ("json_array", b"[1, 2, 3]", None),
    ("json_string", b'"h100"', None),
    ("json_null", b"null", None),
]


@pytest.mark.parametrize(("case", "content", "field"), _HOSTILE, ids=[c[0] for c in _HOSTILE])
def test_hostile_profile_is_an_input_error_naming_file_and_field(
    tmp_path: Path, case: str, content: bytes, field: str | None
) -> None:
    path = tmp_path / f"{case}.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_profile(path)
    message = str(info.value)
    assert str(path) in message
    if field is not None:
        assert field in message
    assert len(message) < 500, "hostile values must not be echoed in full"


def test_unreadable_paths_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_profile(tmp_path / "absent.json")
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(InputError, match=r"folder\.json"):
        load_profile(tmp_path / "folder.json")


def test_oversized_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (catalog.MAX_PROFILE_BYTES + 10))
    with pytest.raises(InputError, match="too large"):
        load_profile(path)


def test_device_file_is_refused(tmp_path: Path) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(InputError, match="too large"):
        load_profile("/dev/zero")


def test_non_finite_provenance_is_refused() -> None:
    raw = _h100_raw()
    raw["calibration"] = dict(_CALIBRATION, provenance={"rmse": float("nan")})
    with pytest.raises(InputError, match=r"calibration\.provenance"):
        parse_profile(raw, where="x.json")


_CALIBRATION: dict[str, Any] = {
    "status": "fitted",
    "gemm_efficiency": {"bf16": 0.8, "fp8": 0.7},
    "launch_us": 4.0,
    "k_fill": 64.0,
    "bandwidth_efficiency": 0.9,
    "misalign_16b_factor": 0.5,
    "misalign_coarse_factor": 0.9,
    "tile_reuse_cost": 0.1,
    "attention_fwd_efficiency": 0.6,
    "attention_bwd_efficiency": 0.5,
    "provenance": {"data": "bench/h100.jsonl", "rmse": 0.05},
}


def test_a_valid_calibration_block_loads() -> None:
    raw = _h100_raw()
    raw["calibration"] = copy.deepcopy(_CALIBRATION)
    gpu = parse_profile(raw, where="x.json")
    assert gpu.calibration is not None
    assert gpu.calibration.efficiency("bf16") == 0.8
    assert gpu.calibration.efficiency("tf32") == 0.8  # shares bf16's fit
    assert gpu_to_dict(gpu)["calibration"]["provenance"]["rmse"] == 0.05


# ------------------------------------------------------------------- property-based fuzz
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12,
)

_BASE = _h100_raw()
_BASE["calibration"] = _CALIBRATION
# (container path, key): the places a mutation can hit, top level and nested
_SPOTS = [((), k) for k in [*_BASE, "bogus"]] + [
    (("peak_tflops",), k) for k in [*_BASE["peak_tflops"], "fp4"]
] + [(("attention_tiles",), k) for k in ["64", "128", "256", "0", "²", "-1"]] + [
    (("sources",), k) for k in _BASE["sources"]
] + [(("calibration",), k) for k in _CALIBRATION] + [
    (("calibration", "gemm_efficiency"), "bf16"),
]


@st.composite
def _mutated_profiles(draw: st.DrawFn) -> dict[str, Any]:
    raw = copy.deepcopy(_BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        parent_path, key = draw(st.sampled_from(_SPOTS))
        parent: Any = raw
        for part in parent_path:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if draw(st.booleans()):
            parent.pop(key, None)
        else:
            parent[key] = draw(_json)
    return raw


@settings(max_examples=400, deadline=None)
@given(_mutated_profiles())
def test_mutated_profile_is_accepted_or_an_input_error(raw: dict[str, Any]) -> None:
    try:
        gpu = parse_profile(raw, where="fuzz.json")
    except InputError as exc:
        assert str(exc).startswith("fuzz.json: ")
    else:
        # whatever it accepted must print as strict JSON (no NaN) and reload to the same GPU
        text = json.dumps(gpu_to_dict(gpu), allow_nan=False)
        assert parse_profile(json.loads(text), where="fuzz.json") == gpu


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    position=st.integers(min_value=0, max_value=len(_VALID)),
    cut=st.integers(min_value=0, max_value=8),
    insert=st.binary(max_size=8),
)
def test_byte_mutated_file_is_accepted_or_an_input_error(
    tmp_path: Path, position: int, cut: int, insert: bytes
) -> None:
    data = _VALID.encode()
    path = tmp_path / "mutated.json"
    path.write_bytes(data[:position] + insert + data[position + cut:])
    try:
        load_profile(path)
    except InputError as exc:
        assert str(path) in str(exc)


# ---------------------------------------------------------------- user profile folders
def _user_profile(folder: Path, **changes: Any) -> Path:
    raw = _h100_raw()
    raw.update(id="my-gpu", name="My Lab GPU", aliases=["lab-box", "my alias"])
    raw.update(changes)
    path = folder / f"{raw['id']}.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def test_shapewise_profiles_adds_a_user_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _user_profile(tmp_path)
    monkeypatch.setenv("SHAPEWISE_PROFILES", str(tmp_path))
    ids = [g.id for g in list_gpus()]
    assert "my-gpu" in ids and len(ids) == len(ALL_IDS) + 1
    assert get_gpu("LAB-BOX").id == "my-gpu"
    assert get_gpu("My Alias").id == "my-gpu"
    assert get_gpu("h100").id == "h100-sxm"  # built-ins still there
    monkeypatch.delenv("SHAPEWISE_PROFILES")
    with pytest.raises(InputError):
        get_gpu("lab-box")


def test_user_profile_overrides_a_builtin_of_the_same_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _user_profile(tmp_path, id="h100-sxm", aliases=["h100"], calibration=_CALIBRATION)
    monkeypatch.setenv("SHAPEWISE_PROFILES", str(tmp_path))
    gpu = get_gpu("h100")
    assert gpu.path == str(tmp_path / "h100-sxm.json")
    assert gpu.calibration is not None and gpu.calibration.status == "fitted"
    assert len(list_gpus()) == len(ALL_IDS)


def test_bad_user_profile_names_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    monkeypatch.setenv("SHAPEWISE_PROFILES", str(tmp_path))
    with pytest.raises(InputError, match=r"broken\.json"):
        list_gpus()


def test_shapewise_profiles_must_name_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHAPEWISE_PROFILES", str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="SHAPEWISE_PROFILES"):
        get_gpu("h100")
