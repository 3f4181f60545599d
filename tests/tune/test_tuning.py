"""``shapewise.tune`` in one process: what is compared, storage URLs, pruning, the report
(real CPU measurements and fakes) and the ``shapewise tune`` command."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import optuna
import pytest

import shapewise
import shapewise.tuning as tuning
from shapewise.cli.main import main
from shapewise.errors import InputError
from shapewise.model.shape import ModelShape
from shapewise.step import estimate

TINY = {"params": 20e6, "gpu": "h100", "arch": "llama", "seq_len": 64, "vocab_size": 8192,
        "top_k": 3, "device": "cpu",
        # the third finalist of this toy is predicted at under half the best's kernel rate
        # (since the step model prices per-step overhead apart, the search ranks these
        # three within 2% on the whole step): the default margin would rightly prune it.
        # Tests that are not about pruning keep every finalist.
        "prune_margin": 0.9}


def _fake(order: str = "predicted", sleep_s: float = 0.0) -> Any:
    spec = importlib.util.spec_from_file_location("_tune_worker",
                                                  Path(__file__).with_name("_worker.py"))
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.fake_measure(budget=TINY["params"], order=order, sleep_s=sleep_s)


# ---------------------------------------------------------------------- what is compared
@pytest.mark.parametrize("shape,tp", [
    (ModelShape.llama(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                      num_hidden_layers=32, vocab_size=32000), 1),
    (ModelShape.llama(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                      num_hidden_layers=32, vocab_size=32000), 4),
    (ModelShape.gpt(hidden_size=768, num_attention_heads=12, num_hidden_layers=12), 1),
    (ModelShape.vit(hidden_size=768, num_attention_heads=12, num_hidden_layers=12), 2),
])
def test_predicted_parts_plus_unmeasured_ops_make_the_step(shape: ModelShape, tp: int) -> None:
    est = estimate(shape, gpu="h100", seq_len=None if shape.arch == "vit" else 1024, tp=tp)
    layer, head = tuning.predicted_parts(est)
    left_out = sum(op.total_s for op in est.breakdown
                   if op.kind == "comm" or op.name in ("embedding", "patch_embed"))
    # the step also holds the optimizer and the host overheads (#10), which no trial measures
    left_out += est.categories["optimizer"] + est.categories["overhead"]
    assert shape.num_hidden_layers * layer + head + left_out == pytest.approx(est.step_time_s)
    assert 0 < head < layer * shape.num_hidden_layers


# ------------------------------------------------------------------------------ storage
def test_storage_forms(tmp_path: Path) -> None:
    assert tuning.journal_path("journal:///tmp/x.log") == "/tmp/x.log"
    assert tuning.journal_path("runs/t.log") == "runs/t.log"
    assert tuning.journal_path("sqlite:///t.db") is None
    assert isinstance(tuning.open_storage(str(tmp_path / "a.log")),
                      optuna.storages.JournalStorage)
    assert isinstance(tuning.open_storage(f"journal://{tmp_path}/b.log"),
                      optuna.storages.JournalStorage)
    rdb = tuning.open_storage(f"sqlite:///{tmp_path}/c.db", heartbeat_s=2)
    assert isinstance(rdb, optuna.storages.RDBStorage)
    assert rdb.heartbeat_interval == 2 and rdb.grace_period == 6


@pytest.mark.parametrize("url", ["study.db", "redis://localhost/0", "journal://",
                                 "/no/such/folder/t.log"])
def test_bad_storage_names_the_option(url: str) -> None:
    with pytest.raises(InputError, match=r"^--storage:"):
        tuning.open_storage(url)


@pytest.mark.parametrize("content", [b"epoch 1 loss 2.3\n", b"\x00\xff\x10binary",
                                     b'{"not": "a journal"}\n', b"[1, 2]\n"])
def test_a_file_that_is_not_a_journal_is_left_alone(content: bytes, tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(content)
    with pytest.raises(InputError, match=r"^--storage: .*train.log is not an Optuna journal"):
        tuning.open_storage(str(log))
    assert log.read_bytes() == content  # nothing appended


def test_an_existing_journal_and_an_empty_file_are_accepted(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    optuna.create_study(storage=tuning.open_storage(str(log)), study_name="x")
    assert log.stat().st_size > 0
    optuna.load_study(storage=tuning.open_storage(str(log)), study_name="x")
    (tmp_path / "empty.log").touch()
    tuning.open_storage(str(tmp_path / "empty.log"))


@pytest.mark.parametrize("url", ["", "   ", "journal://"])
def test_an_empty_storage_is_an_error(url: str) -> None:
    with pytest.raises(InputError, match=r"^--storage:"):
        tuning.open_storage(url)


def test_password_is_hidden() -> None:
    shown = tuning.storage.redact("postgresql://me:s3cret@db.example:5432/tune")
    assert "s3cret" not in shown and "db.example" in shown


# ------------------------------------------------------------------------------ pruning
def test_hopeless_pruner() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.create_trial(value=100.0, params={}, distributions={}))
    pruner = tuning.HopelessPruner(0.5)

    def frozen(values: list[float]) -> optuna.trial.FrozenTrial:
        return optuna.create_trial(state=optuna.trial.TrialState.RUNNING, params={},
                                   distributions={},
                                   intermediate_values=dict(enumerate(values)))

    assert pruner.prune(study, frozen([40.0, 45.0]))
    assert not pruner.prune(study, frozen([40.0]))  # one repeat is not enough
    assert not pruner.prune(study, frozen([10.0, 60.0]))  # a disturbed repeat is not
    assert not pruner.prune(study, frozen([]))
    assert not pruner.prune(optuna.create_study(direction="maximize"), frozen([1.0, 1.0]))
    with pytest.raises(InputError, match="prune_margin"):
        tuning.HopelessPruner(1.5)


# ------------------------------------------------------------------------------- report
def test_cpu_report_with_real_measurements(tmp_path: Path) -> None:
    """The whole path on the CPU: real torch layers, timed; a ranking and a correlation."""
    rep = shapewise.tune(study="cpu", storage=str(tmp_path / "t.log"), repeats=1,
                         record=str(tmp_path / "results.json"), **TINY)
    assert [c.state for c in rep.candidates] == ["complete"] * 3
    assert [c.measured_rank for c in rep.candidates] == [1, 2, 3]
    assert sorted(c.predicted_rank for c in rep.candidates) == [1, 2, 3]
    assert rep.rho is not None and -1 <= rep.rho <= 1
    assert rep.measure_dtype == "fp32" and rep.device == "cpu"
    for c in rep.candidates:
        assert c.measured_layer_s and c.measured_layer_s > 0
        assert c.error == pytest.approx(c.predicted_step_s / c.measured_step_s - 1)
    assert any("CPU" in n for n in rep.notes)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["format"] == "shapewise-tune-results/1" and len(doc["records"]) == 3
    assert doc["provenance"]["device"] == "cpu" and "method_version" in doc["provenance"]
    assert doc["records"][0]["measured_step_s"] > 0


def test_each_trial_and_repeat_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(tuning.trial, "_measure", _fake())
    shapewise.tune(study="p", storage=str(tmp_path / "t.log"), repeats=2, progress=True,
                   **TINY)
    err = capsys.readouterr().err
    assert err.count(": measuring candidate ") == 3  # one per finalist, before it runs
    assert err.count(": repeat 1/2: block ") == 3 and err.count(": repeat 2/2: block ") == 3


@pytest.mark.parametrize("order,poor", [("predicted", False), ("reversed", True)])
def test_rank_correlation_and_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      order: str, poor: bool) -> None:
    monkeypatch.setattr(tuning.trial, "_measure", _fake(order))
    rep = shapewise.tune(study="r", storage=str(tmp_path / "t.log"), **TINY)
    assert rep.rho == pytest.approx(-1.0 if poor else 1.0)
    assert rep.poor is poor
    assert any("ranks these finalists poorly" in w for w in rep.warnings) is poor
    errors = [c.error for c in rep.candidates]
    assert all(e is not None for e in errors)
    if not poor:  # the fake measures exactly the prediction
        assert all(abs(e) < 1e-9 for e in errors)  # type: ignore[arg-type]


def test_more_trials_than_finalists_repeat_them(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning.trial, "_measure", _fake())
    rep = shapewise.tune(study="x", storage=str(tmp_path / "t.log"), n_trials=7, **TINY)
    assert rep.trial_states["complete"] == 7
    assert sorted(len(c.trials) for c in rep.candidates) == [2, 2, 3]


def test_fewer_trials_than_finalists_measure_the_best_predicted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning.trial, "_measure", _fake())
    rep = shapewise.tune(study="f", storage=str(tmp_path / "t.log"), n_trials=2, **TINY)
    assert sorted(c.index for c in rep.candidates) == [0, 1]
    assert [c.state for c in rep.candidates] == ["complete"] * 2
    assert rep.rho is None
    assert rep.warnings == ("2 finalist(s) measured: a rank correlation needs at least 3 "
                            "(raise --top-k / --n-trials)",)


def test_hopeless_candidate_is_pruned_but_ranked(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake()

    def measure(shape: ModelShape, **kw: Any) -> Any:
        for t in fake(shape, **kw):
            if shape == slow:
                t.block_s *= 5  # five times slower than predicted: hopeless
            yield t

    monkeypatch.setattr(tuning.trial, "_measure", measure)
    rec = shapewise.recommend_shape(params=TINY["params"], gpu="h100", arch="llama",
                                    seq_len=64, vocab_size=8192, top_k=3)
    slow = rec.candidates[2].shape
    rep = shapewise.tune(study="p", storage=str(tmp_path / "t.log"), repeats=3,
                         **{**TINY, "prune_margin": 0.5})
    last = rep.candidates[-1]
    assert last.state == "pruned" and last.measured_rank == 3
    assert rep.trial_states["pruned"] == 1 and rep.trial_states["complete"] == 2


def test_joining_with_other_options_is_refused(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning.trial, "_measure", _fake())
    store = str(tmp_path / "t.log")
    shapewise.tune(study="j", storage=store, **TINY)
    with pytest.raises(InputError, match=r"^--study: 'j' was created with seq_len=64"):
        shapewise.tune(study="j", storage=store, **{**TINY, "seq_len": 128})
    rep = shapewise.tune(study="j", storage=store, device="cpu")  # nothing given: joins
    assert rep.this_worker == () and rep.trial_states["complete"] == 3


def test_a_study_made_from_a_target_is_the_study_of_its_fields(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tune(target=make_target(...)) stores the options the keywords would, so a worker
    giving the fields one by one joins it; a target whole must match in every field."""
    monkeypatch.setattr(tuning.trial, "_measure", _fake())
    store = str(tmp_path / "t.log")
    loose = {k: v for k, v in TINY.items() if k not in ("gpu", "seq_len")}
    made = shapewise.tune(study="t", storage=store,
                          target=shapewise.make_target(gpu="h100", seq_len=64), **loose)
    keywords = shapewise.tune(study="k", storage=store, **TINY)
    assert made.config == keywords.config
    assert [c.shape for c in made.candidates] == [c.shape for c in keywords.candidates]
    joined = shapewise.tune(study="t", storage=store, gpu="h100", seq_len=64, device="cpu")
    assert joined.this_worker == ()
    with pytest.raises(InputError, match=r"^--study: 't' was created with micro_batch=1 "
                                         r"\(asked 2\)"):
        shapewise.tune(study="t", storage=store, device="cpu",
                       target=shapewise.make_target(gpu="h100", seq_len=64, micro_batch=2))


def test_a_new_study_needs_the_budget(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^--params:"):
        shapewise.tune(study="n", storage=str(tmp_path / "t.log"), gpu="h100", device="cpu")
    with pytest.raises(InputError, match=r"^--gpu:"):
        shapewise.tune(study="n", storage=str(tmp_path / "t.log"), params=1e9, device="cpu")
    assert not (tmp_path / "t.log").exists()  # a failed start leaves no empty journal


def test_without_torch_tune_says_so_before_touching_storage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(InputError, match=r"pip install 'shapewise\[bench\]'"):
        shapewise.tune(study="n", storage=str(tmp_path / "t.log"), params=1e9, gpu="h100",
                       device="cpu")
    assert not (tmp_path / "t.log").exists()


# ----------------------------------------------------------------------------------- CLI
def _cli(tmp_path: Path, *extra: str) -> list[str]:
    return ["tune", "--params", "20M", "--gpu", "h100", "--arch", "llama", "--seq-len", "64",
            "--vocab-size", "8192", "--top-k", "3", "--device", "cpu", "--quiet",
            "--prune-margin", str(TINY["prune_margin"]),
            "--storage", str(tmp_path / "t.log"), "--study", "cli", *extra]


def test_cli_report_says_when_correlation_is_poor(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning.trial, "_measure", _fake("reversed"))
    assert main(_cli(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "pred tok/s/GPU" in out and "meas tok/s/GPU" in out and "step err %" in out
    assert "Spearman rank correlation, predicted vs measured: -1.00 (poor)" in out
    assert "warning: the analytic model ranks these finalists poorly" in out
    assert "shapewise fit" in out


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning.trial, "_measure", _fake())
    assert main([*_cli(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rho"] == pytest.approx(1.0) and doc["poor_correlation"] is False
    assert len(doc["candidates"]) == 3 and doc["trial_states"]["complete"] == 3


@pytest.mark.parametrize("argv,flag", [
    (["tune", "--study", "s", "--storage", "redis://h/0"], "--storage"),
    (["tune", "--study", "s", "--gpu", "h100", "--device", "cpu"], "--params"),
    (["tune", "--study", "s", "--params", "7B", "--gpu", "h100", "--device", "tpu"],
     "--device"),
])
def test_cli_errors_name_the_option(argv: list[str], flag: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"shapewise tune: error: {flag}:"), err
