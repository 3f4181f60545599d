"""MoE and fp8 validation: DeepGEMM's grouped MoE rows against the GEMM model, llm-foundry's
fp8/bf16 pairs against estimate(recipe=), and the Llama-3-8B fp8 breakdown of
docs/cost-model.md section 8.

The H100 fp8 GEMM calibration is fitted on the *dense* ("Normal GEMMs") rows of
``deepgemm_h800_fp8.csv`` only (scripts/public_data.py skips the grouped layouts), so its
grouped rows are out of sample here. A grouped GEMM of G experts with m tokens each is priced
as ``Gemm(m, n, k, batch=G)`` (shapewise/cost/moe.py), with no parameter of its own.

    python scripts/validate_moe.py [DATA_FOLDER]

Nothing is fitted here: the llm-foundry fp8 rows are only compared with the prediction.

DATA_FOLDER defaults to ../shared/data; the script says so and exits 0 when it is absent.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

from shapewise.cost.price import price
from shapewise.model import ModelShape
from shapewise.ops import Gemm
from shapewise.step import estimate

FILE = "deepgemm_h800_fp8.csv"


def rows(folder: Path) -> list[dict[str, str]]:
    with (folder / FILE).open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if not r["layout"].startswith("Normal")]


def main(argv: list[str]) -> int:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    folder = Path(argv[1]) if len(argv) > 1 else default
    if not (folder / FILE).is_file():
        print(f"{folder / FILE}: not found; nothing to validate (public data absent)")
        return 0
    errors = []
    print(f"{'layout':<34} {'G':>2} {'m/G':>5} {'n':>5} {'k':>5} {'meas us':>9} "
          f"{'pred us':>9} {'err %':>7}")
    for r in rows(folder):
        g = Gemm(m=int(r["m_per_group"]), n=int(r["n"]), k=int(r["k"]),
                 batch=int(r["groups"]), dtype="fp8")
        pred = price(g, "h100") * 1e6  # H800 = H100 SXM compute
        meas = float(r["time_us_derived"])
        err = 100 * (pred / meas - 1)
        errors.append(err)
        layout = r["layout"].split("(")[-1].rstrip(")")[:34]
        print(f"{layout:<34} {r['groups']:>2} {r['m_per_group']:>5} {r['n']:>5} {r['k']:>5} "
              f"{meas:9.1f} {pred:9.1f} {err:7.1f}")
    absolute = sorted(abs(e) for e in errors)
    print(f"\n{len(errors)} grouped rows: median |error| {statistics.median(absolute):.1f}%, "
          f"median signed {statistics.median(errors):+.1f}%, max |error| {absolute[-1]:.1f}%")
    foundry(folder)
    xla_fp8(folder)
    llama3_breakdown()
    return 0


def xla_fp8(folder: Path) -> None:
    """The validation file's B200 fp8 GEMMs (never fitted on): errors next to bf16's."""
    path = folder / "xla_matmul_perf_table.csv"
    if not path.is_file():
        print(f"{path}: not found; XLA fp8 validation skipped")
        return
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["xla_device_key"] == "sm_100_B200"]
    print()
    for key, dtype in (("f8e4m3fnxf8e4m3fn->bf16", "fp8"), ("bf16xbf16->bf16", "bf16")):
        errs = []
        for r in rows:
            if r["dtype"] != key:
                continue
            g = Gemm(m=int(r["m"]), n=int(r["n"]), k=int(r["k"]), batch=int(r["b"]),
                     dtype=dtype)
            errs.append(100 * (price(g, "b200") * 1e6 / float(r["time_us"]) - 1))
        if errs:
            absolute = sorted(abs(e) for e in errs)
            print(f"XLA B200 {key}: {len(errs)} GEMMs, median |error| "
                  f"{statistics.median(absolute):.1f}%, median signed "
                  f"{statistics.median(errs):+.1f}%, p90 |error| "
                  f"{absolute[int(0.9 * len(absolute))]:.1f}%")


def _steps_module():  # type: ignore[no-untyped-def]
    """scripts/validate_steps.py: how a published llm-foundry run becomes a shape and plan."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "validate_steps", Path(__file__).resolve().parent / "validate_steps.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def foundry(folder: Path) -> None:
    """llm-foundry's H100 fp8/bf16 pairs of the same run: measured and predicted speedup.

    Each run is priced as scripts/validate_steps.py prices the bf16 rows (its shape, FSDP
    plan over 8 GPUs, global batch, recompute, attention kernel); the fp8 row of a pair runs
    TransformerEngine's default recipe, per-tensor delayed scaling (``te-delayed``)."""
    from shapewise.plan import make_setup
    from shapewise.step import price_step

    path = folder / "llmfoundry_mpt_throughput.csv"
    if not path.is_file():
        print(f"{path}: not found; fp8 pairs skipped")
        return
    vs = _steps_module()
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))

    def predict(row: dict[str, str]) -> float:
        kw = vs.case(row)
        if kw["dtype"] == "fp8":
            kw.update(dtype="bf16", recipe="te-delayed")
        kw["gpu"] = vs.with_attention_rate(kw["gpu"], vs.MPT_TRITON_ATTENTION["fwd"],
                                           vs.MPT_TRITON_ATTENTION["bwd"])
        shape = vs.mpt_shape(row)
        return float(price_step(shape, make_setup(shape, **kw)).tokens_per_s)

    fp8 = {(r["model"], r["seq_len"], r["n_gpus"]): r for r in rows
           if r["precision"] == "amp_fp8"}
    print("\n| model | seq | micro-batch bf16/fp8 | bf16 tok/s/GPU | fp8 tok/s/GPU | "
          "measured speedup | predicted |\n|---|---:|---:|---:|---:|---:|---:|")
    diffs, errors = [], []
    for r in rows:
        key = (r["model"], r["seq_len"], r["n_gpus"])
        if r["gpu"] != "h100_80gb" or r["precision"] == "amp_fp8" or key not in fp8:
            continue
        f = fp8[key]
        bf_pred, f8_pred = predict(r), predict(f)
        meas = float(f["tput_tok_per_s_per_gpu"]) / float(r["tput_tok_per_s_per_gpu"])
        pred = f8_pred / bf_pred
        diffs.append(pred - meas)
        errors.append(100 * (f8_pred / float(f["tput_tok_per_s_per_gpu"]) - 1))
        print(f"| {r['model']} | {r['seq_len']} | {r['micro_batch']}/{f['micro_batch']} | "
              f"{r['tput_tok_per_s_per_gpu']} | {f['tput_tok_per_s_per_gpu']} | "
              f"{meas:.2f} | {pred:.2f} |")
    if diffs:
        print(f"{len(diffs)} pairs: speedup median signed {statistics.median(diffs):+.2f}x, "
              f"max |diff| {max(map(abs, diffs)):.2f}x; fp8 tokens/s median |error| "
              f"{statistics.median(map(abs, errors)):.1f}%, median signed "
              f"{statistics.median(errors):+.1f}% (the bf16 rows' own error carries over: "
              f"scripts/validate_steps.py)")


def llama3_breakdown() -> None:
    """Where the time of a Llama-3-8B step goes, bf16 and fp8 (s=8192, b=1, one GPU)."""
    llama3 = ModelShape.llama(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                              num_hidden_layers=32, intermediate_size=14336,
                              vocab_size=128256, max_position_embeddings=8192)
    parts = {"layer GEMMs": ("qkv_proj", "out_proj", "mlp_gate_up", "mlp_down"),
             "attention": ("attention",), "logits": ("logits",),
             "fp8 quantization": ("fp8_quantize",)}
    for gpu, recipe in (("h100", "te-delayed"), ("b200", "mxfp8")):
        e0 = estimate(llama3, gpu=gpu, seq_len=8192)
        e1 = estimate(llama3, gpu=gpu, seq_len=8192, recipe=recipe)
        print(f"\nLlama-3-8B on {gpu}, bf16 -> {recipe}: step {e0.step_time_s * 1e3:.0f} -> "
              f"{e1.step_time_s * 1e3:.0f} ms ({e0.step_time_s / e1.step_time_s:.2f}x)")
        named = set()
        for part, names in parts.items():
            named |= set(names)
            t0 = sum(o.total_s for o in e0.breakdown if o.name in names)
            t1 = sum(o.total_s for o in e1.breakdown if o.name in names)
            print(f"  {part}: {t0 * 1e3:.0f} ms ({t0 / e0.step_time_s:.0%}) -> {t1 * 1e3:.0f} ms")
        r0 = sum(o.total_s for o in e0.breakdown if o.name not in named)
        r1 = sum(o.total_s for o in e1.breakdown if o.name not in named)
        print(f"  the rest: {r0 * 1e3:.0f} ms ({r0 / e0.step_time_s:.0%}) -> {r1 * 1e3:.0f} ms")
        o0 = e0.categories.get("optimizer", 0) + e0.categories.get("overhead", 0)
        o1 = e1.categories.get("optimizer", 0) + e1.categories.get("overhead", 0)
        print(f"  optimizer and host overheads: {o0 * 1e3:.0f} ms ({o0 / e0.step_time_s:.0%})"
              f" -> {o1 * 1e3:.0f} ms")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
