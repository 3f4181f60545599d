"""``shapewise fit``: turn a ``shapewise bench`` file into a calibrated profile.

The bench file's GEMM timings are fitted with :func:`shapewise.cost.fit.fit_gemm`; its
fused-attention timings (when there are any) set the attention efficiencies. The result is
a full profile (datasheet facts of the GPU plus the fitted ``calibration`` block with
provenance: which file, which device, when, how, and the errors) that ``get_gpu()``,
``--profile FILE`` and ``profile=`` load like any other.

On the CPU there is no datasheet: the "peak" of the synthetic CPU profile is the best GEMM
rate the bench itself measured, and the profile says so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapewise import __version__
from shapewise._io import atomic_write_text, read_json
from shapewise.cost.attention_backends import attention_backend_params
from shapewise.cost.fit import (
    EFFICIENCY_BOUNDS,
    AttentionObservation,
    FitResult,
    GemmObservation,
    fit_attention,
    fit_gemm,
)
from shapewise.errors import InputError
from shapewise.hardware.catalog import (
    GPU,
    MAX_PROFILE_BYTES,
    canonical_dtype,
    get_gpu,
    gpu_to_dict,
    parse_profile,
)

MAX_BENCH_BYTES = 64 * 1024 * 1024
#: CPU timings taken while other processes used more than this many cores' worth of time
#: are left out of the fit (the bench records ``cpu_contention`` per measurement)
MAX_CPU_CONTENTION = 0.3

# When a fit is bad (docs/user-guide.md, section 6): `shapewise fit` warns, and with
# --strict exits 1 without writing the profile, when the *cross-validated* error or the
# share of timings left out passes these. The GPU fits of docs/validation.md stay well
# inside them; a CPU fit on a quiet machine does too.
#: cross-validated median absolute error of the GEMM times, in %
MAX_MEDIAN_ERROR_PCT = 15.0
#: cross-validated 90th-percentile absolute error of the GEMM times, in %
MAX_P90_ERROR_PCT = 50.0
#: share of the GEMM timings left out of the fit (taken under contention)
MAX_DROPPED_SHARE = 0.25
# The machine "looked busy" when more than BUSY_SHARE of the GEMM timings spread over
# NOISY_SPREAD of their median (interquartile range; the bench's own noise mark), or were
# taken under contention, or when the load average at the start exceeded the usable CPUs.
NOISY_SPREAD = 0.25
BUSY_SHARE = 0.10
#: a CPU profile's peak is the best GEMM rate measured, not a datasheet's: its main-loop
#: efficiency may come out above 1 (the loop runs faster than a whole GEMM with its fill
#: and tail), so the fit lets it go to this, then folds it into the peak (efficiency 1)
CPU_EFFICIENCY_MAX = 4.0


def load_bench(path: str | Path) -> dict[str, Any]:
    """Read a bench results file (JSON; JSON Lines partials are accepted) safely."""
    p = Path(path)
    doc = read_json(p, limit=MAX_BENCH_BYTES, what="a bench file")
    if not isinstance(doc, dict) or not isinstance(doc.get("measurements"), list):
        raise InputError(f"{p}: field 'measurements' is missing (not a shapewise bench file?)")
    if not isinstance(doc.get("provenance", {}), dict):
        raise InputError(f"{p}: field 'provenance' must be an object")
    return doc


def _num(rec: Mapping[str, Any], key: str, where: str) -> float:
    v = rec.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        raise InputError(f"{where}: field '{key}' must be a positive number, got {v!r}")
    return float(v)


def _gemm_rows(doc: Mapping[str, Any], where: str
               ) -> list[tuple[GemmObservation, float | None]]:
    """Each BLAS GEMM timing of a bench document with its CPU contention (None: unknown).

    Each observation's ``source`` is its bench key; :func:`_spreads` reads the spreads."""
    rows = []
    for i, rec in enumerate(doc["measurements"]):
        if not isinstance(rec, dict):
            raise InputError(f"{where}: measurements[{i}] must be an object")
        if rec.get("status", "ok") != "ok" or rec.get("kind") not in ("gemm", "bmm"):
            continue
        if rec.get("backend", "blas") != "blas":
            continue  # Triton's fixed-tile kernels are not the vendor BLAS the model describes
        w = f"{where}: measurements[{i}]"
        dtype = canonical_dtype(str(rec.get("dtype")), field_name=f"{w}.dtype")
        dims = [_num(rec, key, w) for key in ("m", "n", "k")]
        batch = _num(rec, "batch", w) if "batch" in rec else 1.0
        if any(d != int(d) for d in [*dims, batch]):
            raise InputError(f"{w}: sizes must be integers")
        c = rec.get("cpu_contention")
        contention = float(c) if isinstance(c, int | float) and not isinstance(c, bool) else None
        rows.append((GemmObservation(dtype, int(dims[0]), int(dims[1]), int(dims[2]),
                                     int(batch), _num(rec, "median_s", w),
                                     source=str(rec.get("key", ""))), contention))
    return rows


def _kept(rows: Sequence[tuple[GemmObservation, float | None]],
          max_contention: float | None) -> list[GemmObservation]:
    everything = [o for o, _ in rows]
    if max_contention is None:
        return everything
    kept = [o for o, c in rows if c is None or c <= max_contention]
    return kept if len(kept) >= 8 else everything


def gemm_observations(doc: Mapping[str, Any], where: str,
                      max_contention: float | None = MAX_CPU_CONTENTION) -> list[GemmObservation]:
    """The BLAS GEMM timings of a bench document (Triton's fixed-tile kernels left out).

    CPU timings taken while other work held the cores (``cpu_contention`` above
    ``max_contention``) are left out, unless that would leave fewer than 8: then all are
    kept (:func:`fit_profile` records which).
    """
    return _kept(_gemm_rows(doc, where), max_contention)


def _machine_memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (AttributeError, OSError, ValueError):
        return None


def _cpu_memory_gb(prov: Mapping[str, Any], cpu: Mapping[str, Any]) -> tuple[float, str]:
    """The measured machine's memory in GB, and where the figure comes from.

    The bench records it (``provenance.cpu.memory_gb``); for an older file that does not,
    this machine's physical memory, and the reference says whether the bench file names
    this host or the figure is an assumption. (A placeholder of 1 GB once raised false
    "exceeds memory" notes.)"""
    recorded = cpu.get("memory_gb")
    if isinstance(recorded, int | float) and not isinstance(recorded, bool) and recorded > 0:
        return float(recorded), "the bench file's provenance (cpu.memory_gb, physical memory)"
    here = _machine_memory_gb()
    if here is None:
        raise InputError("provenance: the bench file does not record the machine's memory "
                         "(cpu.memory_gb) and this machine's cannot be read")
    if prov.get("hostname") == socket.gethostname():
        return here, ("physical memory of this host, which the bench file names as the "
                      "measured one (the file does not record it)")
    return here, ("physical memory of the machine that ran 'shapewise fit', ASSUMED to be "
                  "the measured one: the bench file records neither its memory nor this host")


def cpu_profile(doc: Mapping[str, Any], obs: Sequence[GemmObservation]) -> GPU:
    """A synthetic profile for the CPU the bench ran on (no datasheet exists for it)."""
    prov = doc.get("provenance", {})
    threads = prov.get("threads") or prov.get("cpu_threads") or 1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0:
        threads = 1
    peaks: dict[str, float] = {}
    for d in sorted({o.dtype for o in obs}):
        best = max(2.0 * o.batch * o.m * o.n * o.k / o.time_s for o in obs if o.dtype == d)
        peaks[d] = best / 1e12
    bw = prov.get("memory_bandwidth_gbs")
    cpu = prov.get("cpu") if isinstance(prov.get("cpu"), dict) else {}
    name = str(cpu.get("model") or platform.processor() or "CPU")
    ref = "the bench file's own measurements (no datasheet for this CPU)"
    memory_gb, memory_ref = _cpu_memory_gb(prov, cpu)
    raw = {
        "schema_version": 1, "id": "cpu-measured", "name": f"{name} (CPU)", "vendor": "cpu",
        "arch": "cpu", "arch_code": platform.machine() or "cpu", "aliases": [],
        "sm_count": threads, "boost_clock_mhz": 1000.0,
        "peak_tflops": peaks,
        "memory_gb": memory_gb,
        "memory_bandwidth_tbs": (bw / 1000.0) if isinstance(bw, int | float) and bw > 0 else 0.02,
        "l2_mb": 1.0, "smem_per_sm_kb": 32.0, "warp_size": 1,
        "matrix_instruction": "SIMD FMA (BLAS)", "alignment_bytes": 64,
        # CPU BLAS blocks: each thread takes ~64x64 output blocks, built of 16-wide SIMD
        # micro-tiles, so padding costs at most a micro-tile (not a GPU CTA tile)
        "gemm_tiles": [[64, 64], [16, 16]],
        "attention_tiles": {"64": [64, 64], "128": [64, 64]},
        "link_bandwidth_gbs": 0, "link_name": "none",
        "sources": {**{f: "bench" for f in (
            "sm_count", "boost_clock_mhz", "peak_tflops", "memory_bandwidth_tbs",
            "l2_mb", "smem_per_sm_kb", "warp_size", "matrix_instruction", "alignment_bytes",
            "gemm_tiles", "attention_tiles", "link_bandwidth_gbs")}, "memory_gb": "memory"},
        "references": {"bench": ref, "memory": memory_ref},
        "notes": "Peaks are the best measured GEMM rate per dtype; sm_count is the thread "
                 "count; other fields are placeholders the GEMM model does not use on a CPU.",
    }
    return parse_profile(raw, where="cpu profile")


def _check_out(out: Path, inputs: Sequence[Path]) -> None:
    """--out must be a new or a profile file: never one of the measurements."""
    if out.is_dir():
        raise InputError(f"--out: {out} is a folder; name the profile file to write")
    if not out.parent.resolve().is_dir():
        raise InputError(f"--out: folder {out.parent} does not exist")
    if out.exists():
        if any(out.resolve() == f.resolve() for f in inputs if f.exists()):
            raise InputError(f"--out: {out} is one of the bench files; writing the profile "
                             "there would lose the measurements")
        try:
            existing = read_json(out, limit=MAX_PROFILE_BYTES * 64, what="--out")
        except InputError:
            return  # not JSON we can read: an old profile or junk, overwritten as asked
        if isinstance(existing, dict) and "measurements" in existing:
            raise InputError(f"--out: {out} holds bench measurements; writing the profile "
                             "there would lose them")


def _write_atomic(out: Path, text: str) -> None:
    """Write ``text`` to ``out`` so that a reader never sees half a profile."""
    try:
        atomic_write_text(out, text)
    except OSError as exc:
        raise InputError(f"--out: cannot write {out}: {exc.strerror or exc}") from None


def _device_of(doc: Mapping[str, Any]) -> tuple[str, str]:
    prov = doc.get("provenance", {})
    prov = prov if isinstance(prov, Mapping) else {}
    device = str(prov.get("device", "") or "")
    kind = ("cpu" if device.lower().startswith("cpu") or prov.get("device_type") == "cpu"
            else "gpu")
    return kind, str(prov.get("device_name", "") or device)


def _same_device(docs: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Several bench files are fitted together only if one device measured them all."""
    first_where, first = docs[0]
    ref = _device_of(first)
    for where, doc in docs[1:]:
        dev = _device_of(doc)
        if dev != ref:
            raise InputError(
                f"bench_file: {where} was measured on {dev[1]!r} ({dev[0]}), {first_where} "
                f"on {ref[1]!r} ({ref[0]}); fit one device at a time")


def _gpu_matches(gpu: GPU, prov: Mapping[str, Any], where: str, *, by_name: bool) -> None:
    """--gpu must not contradict the device the file says it measured. A profile given as
    a file (--profile: an earlier fit, a user's own datasheet) is taken at its word, as
    long as it is a GPU for a GPU's file and a CPU for a CPU's."""
    kind, name = _device_of({"provenance": prov})
    option = "--gpu" if by_name else "--profile"
    if kind == "cpu":
        if gpu.vendor != "cpu":
            raise InputError(f"{option}: {where} was measured on the CPU, not on {gpu.name}; "
                             f"fit it without {option} (a CPU profile is built from it)")
        return
    if not by_name:
        if gpu.vendor == "cpu":
            raise InputError(f"--profile: {where} was measured on {name!r}, not on a CPU")
        return
    try:
        measured = get_gpu(name)
    except InputError:
        return  # a device the catalog does not know: --gpu says which datasheet to use
    if measured.id != gpu.id and measured.name != gpu.name:
        raise InputError(f"--gpu: {where} was measured on {name!r} ({measured.id}), not on "
                         f"{gpu.id}; leave --gpu out or name the GPU that was measured")


def _guess_gpu(doc: Mapping[str, Any], obs: Sequence[GemmObservation], where: str) -> GPU:
    kind, _ = _device_of(doc)
    if kind == "cpu":
        return cpu_profile(doc, obs)
    name = doc.get("provenance", {}).get("device_name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: provenance names no device; pass --gpu NAME")
    return get_gpu(name, field_name="--gpu (from the bench file's device_name)")


#: bench rows (``shapewise.kernels.attention.BACKENDS``) -> cost-model attention backends;
#: ``math`` is priced by the GEMM model (nothing to fit)
BENCH_ATTENTION_BACKENDS = {"flash": "sdpa-flash", "efficient": "sdpa-efficient",
                            "cudnn": "cudnn", "flash_attn": "fa2", "triton": "triton"}
#: on ROCm, SDPA's flash and efficient rows run AOTriton and the flash_attn package is CK
ROCM_ATTENTION_BACKENDS = {"flash": "aotriton", "efficient": "aotriton", "flash_attn": "ck",
                           "triton": "triton"}


def _attention_observations(gpu: GPU, doc: Mapping[str, Any]) -> list[AttentionObservation]:
    """The fused-attention timings of a bench file, as the attention fit reads them."""
    names = ROCM_ATTENTION_BACKENDS if gpu.vendor == "amd" else BENCH_ATTENTION_BACKENDS
    out = []
    for rec in doc["measurements"]:
        if (not isinstance(rec, dict) or rec.get("kind") != "attention"
                or rec.get("status", "ok") != "ok" or rec.get("backend") not in names):
            continue
        try:
            heads, d = int(rec["heads"]), int(rec["head_dim"])
            o = AttentionObservation(
                gpu.id, names[rec["backend"]], str(rec["dtype"]),
                int(rec["batch"]), heads, int(rec.get("kv_heads") or heads),
                int(rec["seq_len"]), int(rec.get("seq_len_kv") or rec["seq_len"]), d, d,
                bool(rec.get("causal", False)), None, bool(rec.get("backward")),
                float(rec["median_s"]), "shapewise bench")
        except (KeyError, TypeError, ValueError):
            continue
        if o.time_s > 0 and math.isfinite(o.time_s):
            out.append(o)
    return out


def _fit_attention(gpu: GPU, doc: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per backend measured, its fitted parameters (``calibration.attention_backends``).

    The bench's fused-attention timings of each backend are fitted as the public ones are
    (:func:`shapewise.cost.fit.fit_attention`): an efficiency per direction with enough
    timings, κ and c₀ where the timings allow, the priors' values otherwise. GPUs only:
    the CPU's SDPA kernels are not the GPU kernels the model describes.
    """
    if gpu.vendor not in ("nvidia", "amd"):
        return {}
    obs = _attention_observations(gpu, doc)
    out: dict[str, dict[str, float]] = {}
    for backend in sorted({o.backend for o in obs}):
        prior, _ = attention_backend_params(gpu, backend, "bf16")
        shared = {k: prior[k] for k in ("softmax_exposed", "cta_overhead")}
        try:
            fit = fit_attention(backend, obs, shared=shared, folds=0, gpus={gpu.id: gpu})
        except InputError:  # too few timings of any (direction, dtype): the priors stand
            continue
        if gpu.id in fit.per_gpu:
            out[backend] = {**fit.shared, **fit.per_gpu[gpu.id]}
    return out


def _spread_ratios(docs: Sequence[Mapping[str, Any]]) -> list[float]:
    """Interquartile range / median of every timed BLAS GEMM (the bench's noise measure)."""
    out = []
    for doc in docs:
        for rec in doc["measurements"]:
            if (isinstance(rec, dict) and rec.get("status", "ok") == "ok"
                    and rec.get("kind") in ("gemm", "bmm")
                    and rec.get("backend", "blas") == "blas"):
                med, spread = rec.get("median_s"), rec.get("spread_s")
                if (isinstance(med, int | float) and isinstance(spread, int | float)
                        and med > 0 and spread >= 0):
                    out.append(float(spread) / float(med))
    return out


@dataclass(frozen=True, slots=True)
class FitQuality:
    """Whether a fit can be trusted, by the documented thresholds (module constants)."""

    cv_median_pct: float
    """cross-validated median absolute error of the GEMM times, %"""
    cv_p90_pct: float
    """cross-validated 90th-percentile absolute error, %"""
    dropped: int
    """GEMM timings left out of the fit (taken under contention)"""
    total: int
    """GEMM timings in the bench files"""
    warnings: tuple[str, ...]
    """one sentence per threshold passed; empty when the fit is good"""
    busy: tuple[str, ...]
    """why the machine looked busy while measuring; empty when it did not"""

    @property
    def ok(self) -> bool:
        """No threshold passed (what --strict requires)."""
        return not self.warnings

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "cv_median_abs_pct": self.cv_median_pct,
                "cv_p90_abs_pct": self.cv_p90_pct, "dropped": self.dropped,
                "total": self.total, "warnings": list(self.warnings),
                "machine_busy": list(self.busy),
                "thresholds": {"max_median_abs_pct": MAX_MEDIAN_ERROR_PCT,
                               "max_p90_abs_pct": MAX_P90_ERROR_PCT,
                               "max_dropped_share": MAX_DROPPED_SHARE,
                               "noisy_spread": NOISY_SPREAD, "busy_share": BUSY_SHARE}}


def _busy(docs: Sequence[Mapping[str, Any]],
          rows: Sequence[tuple[GemmObservation, float | None]]) -> tuple[str, ...]:
    reasons = []
    ratios = _spread_ratios(docs)
    noisy = sum(r > NOISY_SPREAD for r in ratios)
    if ratios and noisy > BUSY_SHARE * len(ratios):
        reasons.append(f"{noisy} of {len(ratios)} GEMM timings spread over "
                       f"{NOISY_SPREAD:.0%} of their median (interquartile range)")
    contended = sum(c is not None and c > MAX_CPU_CONTENTION for _, c in rows)
    if rows and contended > BUSY_SHARE * len(rows):
        reasons.append(f"{contended} of {len(rows)} GEMM timings were taken while other "
                       f"processes held more than {MAX_CPU_CONTENTION} cores")
    for doc in docs:
        cpu = doc.get("provenance", {}).get("cpu")
        if not isinstance(cpu, dict):
            continue
        load, cpus = cpu.get("load_average_1_5_15min"), cpu.get("usable_cpus")
        if (isinstance(load, list) and load and isinstance(load[0], int | float)
                and isinstance(cpus, int) and cpus > 0 and load[0] > cpus):
            reasons.append(f"the 1-minute load average was {load[0]:g} on {cpus} usable "
                           "CPUs when the bench started")
            break
    return tuple(reasons)


def fit_quality(result: FitResult, docs: Sequence[Mapping[str, Any]],
                rows: Sequence[tuple[GemmObservation, float | None]]) -> FitQuality:
    """Judge a fit by the thresholds above; say whether the machine looked busy."""
    cv = result.cross_validated["all"]
    med, p90 = float(cv["median_abs_pct"]), float(cv["p90_abs_pct"])
    total, used = len(rows), result.n_points
    dropped = max(0, total - used)
    warnings = []
    if med > MAX_MEDIAN_ERROR_PCT:
        warnings.append(f"cross-validated median error {med:.1f}% is above "
                        f"{MAX_MEDIAN_ERROR_PCT:g}%")
    if p90 > MAX_P90_ERROR_PCT:
        warnings.append(f"cross-validated p90 error {p90:.1f}% is above {MAX_P90_ERROR_PCT:g}%")
    if total and dropped > MAX_DROPPED_SHARE * total:
        warnings.append(f"{dropped} of {total} GEMM timings ({dropped / total:.0%}) were left "
                        f"out (taken under contention), more than {MAX_DROPPED_SHARE:.0%}")
    return FitQuality(med, p90, dropped, total, tuple(warnings), _busy(docs, rows))


def _fold_cpu_efficiency(gpu: GPU) -> GPU:
    """A CPU profile: move a fitted main-loop efficiency above 1 into the peak, so the
    profile keeps the schema's efficiency <= 1 and predicts the same times."""
    cal = gpu.calibration
    assert cal is not None
    peaks, eff = dict(gpu.peak_tflops), dict(cal.gemm_efficiency)
    for d, e in cal.gemm_efficiency.items():
        if e > 1.0 and d in peaks:
            peaks[d], eff[d] = peaks[d] * e, 1.0
    prov = dict(cal.provenance)
    prov["cpu_peak"] = ("peak_tflops = the best GEMM rate measured x the fitted main-loop "
                        "efficiency when that came out above 1 (no datasheet for a CPU)")
    new_cal = dataclasses.replace(cal, gemm_efficiency=eff, provenance=prov)
    return dataclasses.replace(gpu, peak_tflops=peaks).with_calibration(new_cal)


@dataclass(frozen=True, slots=True)
class FitReport:
    profile: GPU
    gemm: FitResult
    attention: dict[str, dict[str, float]]
    """per attention backend measured, its fitted parameters"""
    bench_file: str
    quality: FitQuality | None = None
    """thresholds passed and signs of a busy machine (None: not judged)"""
    written: bool = True
    """False when --strict kept a failing profile from being written"""

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile.id,
            "bench_file": self.bench_file,
            "written": self.written,
            "quality": self.quality.to_dict() if self.quality else None,
            "n_points": self.gemm.n_points,
            "fitted_parameters": list(self.gemm.fitted),
            "in_sample": self.gemm.in_sample,
            "cross_validated": self.gemm.cross_validated,
            "attention": self.attention,
            "calibration": dataclasses.asdict(self.profile.calibration)
            if self.profile.calibration else None,
        }


def fit_profile(bench_file: str | Path | Sequence[str | Path], *,
                gpu: str | GPU | None = None, out: str | Path | None = None,
                profile_id: str | None = None, seed: int = 0,
                strict: bool = False) -> FitReport:
    """Fit the cost model to one or more bench files of one device (e.g. a bf16 and a tf32
    sweep); write the calibrated profile to ``out``.

    The report's ``quality`` judges the fit by the module's thresholds; with ``strict`` a fit
    that passes one is not written (``written`` False)."""
    files = [bench_file] if isinstance(bench_file, str | Path) else list(bench_file)
    if not files:
        raise InputError("bench_file: at least one bench file is needed")
    if out is not None:
        _check_out(Path(out), [Path(f) for f in files])
    docs = [(str(f), load_bench(f)) for f in files]
    _same_device(docs)
    rows = {where: _gemm_rows(doc, where) for where, doc in docs}
    per_file = {where: _kept(r, MAX_CPU_CONTENTION) for where, r in rows.items()}
    obs = [o for file_obs in per_file.values() for o in file_obs]
    where = ", ".join(per_file)
    if len(obs) < 8:
        raise InputError(f"{where}: {len(obs)} usable GEMM measurements; a fit needs 8")
    doc = {"provenance": docs[0][1].get("provenance", {}),
           "measurements": [m for _, d in docs for m in d["measurements"]]}
    if gpu is not None:
        base = gpu if isinstance(gpu, GPU) else get_gpu(gpu, field_name="--gpu")
        _gpu_matches(base, doc["provenance"], where, by_name=not isinstance(gpu, GPU))
    else:
        base = _guess_gpu(doc, obs, where)
    for o in obs:
        if o.dtype not in base.peak_tflops:
            raise InputError(f"{where}: measured dtype {o.dtype} is not in {base.name}'s peaks")
    base = dataclasses.replace(base, calibration=None)
    bench_prov = doc["provenance"]
    all_rows = sum(len(r) for r in rows.values())
    provenance = {
        "fitted_on": {w: {"rows_used": len(o), "source": "shapewise bench"}
                      for w, o in per_file.items()},
        "left_out": f"{all_rows - len(obs)} CPU timings taken under contention "
                    f"> {MAX_CPU_CONTENTION} cores (kept all when fewer than 8 were clean)",
        "bench_provenance": {k: bench_prov[k] for k in list(bench_prov)[:40]},
        "script": "shapewise fit",
        "shapewise_version": __version__,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": seed,
    }
    is_cpu = base.vendor == "cpu"
    result = fit_gemm(base, obs, seed=seed, provenance=provenance,
                      efficiency_bounds=(EFFICIENCY_BOUNDS[0], CPU_EFFICIENCY_MAX) if is_cpu
                      else EFFICIENCY_BOUNDS)
    all_row_list = [r for file_rows in rows.values() for r in file_rows]
    quality = fit_quality(result, [d for _, d in docs], all_row_list)
    cal = dataclasses.replace(result.calibration, provenance={
        **result.calibration.provenance, "quality": quality.to_dict()})
    fitted = base.with_calibration(cal)
    if is_cpu:
        fitted = _fold_cpu_efficiency(fitted)
    att = _fit_attention(base, doc)
    if att:
        assert fitted.calibration is not None
        fitted = fitted.with_calibration(
            dataclasses.replace(fitted.calibration, attention_backends=att))
    new_id = profile_id or (base.id if base.id.endswith("-measured") else f"{base.id}-measured")
    fitted = dataclasses.replace(
        fitted, id=new_id, aliases=(),
        name=base.name if base.name.endswith("(measured)") else f"{base.name} (measured)")
    written = out is not None and not (strict and not quality.ok)
    if written:
        assert out is not None
        text = json.dumps(gpu_to_dict(fitted), indent=2, allow_nan=False) + "\n"
        if len(text) > MAX_PROFILE_BYTES:
            raise InputError("--out: the fitted profile is unexpectedly large")
        _write_atomic(Path(out), text)
        fitted = dataclasses.replace(fitted, path=str(out))
    return FitReport(fitted, result, att, where, quality, written)

