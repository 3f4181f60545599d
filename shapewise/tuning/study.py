"""The study: what a trial compares, the options it is created with, and its creation.

**What is compared.** A trial times one block and the head (final norm, logits,
cross-entropy; or a ViT's classifier) of one tensor-parallel rank, and counts the step as
``L · block + head``. The prediction it is compared with is the same part of
:func:`shapewise.estimate`: the layer ops (``count`` a multiple of L) plus the head's,
leaving out what is not measured (embedding lookups, and the TP all-reduces: one GPU has no
peer). Tokens/s per GPU is ``micro_batch · seq_len / step / tp``; the trial's value is the
search's own objective, tokens/s × params / budget, so shapes a few percent apart in size
are compared at equal model size. The prediction error of a candidate is
``predicted step / measured step − 1`` (negative: the model is optimistic).

**The study.** The first worker runs stage one, creates the study, stores the candidates
(``study.user_attrs``) and enqueues exactly ``n_trials`` trials, trial *i* measuring
candidate *i mod K*. Every worker then claims WAITING trials one at a time
(:mod:`shapewise.tuning.liveness`), and no worker creates a trial of its own: the study
ends with exactly ``n_trials`` finished trials, plus one FAIL per trial lost with a dead
worker. Later workers (or a restarted one) load the study and its candidates instead of
searching; the options they give must match the study's.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import optuna

from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU, canonical_dtype
from shapewise.model.params import count_params
from shapewise.model.run_defaults import default_seq_len
from shapewise.plan import (
    Plan,
    Target,
    make_setup,
    make_target,
    resolve_hardware,
    target_from,
)
from shapewise.search.constraints import Constraints
from shapewise.search.recommend import recommend_shape
from shapewise.step import Estimate, price_step

FORMAT = "shapewise-tune/1"
#: study user attributes: the options it was created with, its candidates, and a flag
#: set once both are stored
CONFIG = "shapewise:config"
CANDIDATES = "shapewise:candidates"
READY = "shapewise:ready"
#: finalists measured: enough to see whether the ranking holds, few enough to time each
#: one properly (a trial is a few seconds on a GPU)
DEFAULT_TOP_K = 8
#: seconds a joining worker waits for the study's creator to store the candidates
SETUP_TIMEOUT_S = 120.0

#: ops of the estimate outside the measured block and head
_UNMEASURED = frozenset({"embedding", "patch_embed"})
_HEAD_OPS = frozenset({"final_norm", "logits", "cross_entropy", "classifier"})
_COUNTS = ("seq_len", "micro_batch", "tp", "vocab_size", "image_size", "patch_size",
           "top_k", "n_trials", "search_trials")


def predicted_parts(est: Estimate) -> tuple[float, float]:
    """(one layer, the head) of ``est``, seconds: the part a trial measures.

    Layer: every op that runs ``count`` = a multiple of L times, except TP communication;
    head: final norm, logits, cross-entropy or classifier. Embedding lookups are left out.
    """
    L = est.shape.num_hidden_layers
    layers = head = 0.0
    for op in est.breakdown:
        if op.kind == "comm" or op.name in _UNMEASURED:
            continue
        if op.name in _HEAD_OPS:
            head += op.total_s
        else:
            if op.count % L:
                raise AssertionError(f"op {op.name}: count {op.count} is not per layer (L={L})")
            layers += op.total_s
    return layers / L, head


def tokens_per_s(step_s: float, micro_batch: int, seq_len: int, tp: int) -> float:
    return micro_batch * seq_len / step_s / tp


# ----------------------------------------------------------------------- the options
def positive_int(name: str, value: Any) -> int | None:
    """None, or ``value`` as a positive int; InputError naming ``name`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name}: must be a positive integer, got {value!r}")
    return int(value)


#: the fields of a Target tune takes one by one instead of ``target=`` (a joining worker
#: may leave any out: then the study's count)
TARGET_KEYWORDS = ("gpu", "profile", "dtype", "seq_len", "micro_batch", "tp")


@dataclass(frozen=True, slots=True, kw_only=True)
class StudyRequest:
    """The study options one worker gives, validated; None: take the study's (or, for the
    worker that creates it, the default)."""

    params: float | None = None
    """parameter budget of the analytic search"""
    target: Target | None = None
    """the target given whole (``tune(target=...)``): stage one prices under it as it is,
    and a joined study must match all its fields"""
    gpu: GPU | None = None
    """the GPU the analytic search predicts for"""
    system: Any = None
    """the node around it, as the GPU or system name resolved"""
    arch: str | None = None
    dtype: str | None = None
    seq_len: int | None = None
    micro_batch: int | None = None
    tp: int | None = None
    vocab_size: int | None = None
    image_size: int | None = None
    patch_size: int | None = None
    top_k: int | None = None
    """finalists of the analytic search (default DEFAULT_TOP_K)"""
    n_trials: int | None = None
    """trials in the study, all workers together (default ``top_k``)"""
    search_trials: int | None = None
    """trials of the analytic search (its own default)"""
    seed: int | None = None

    @classmethod
    def parse(cls, *, params: Any = None, target: Any = None, arch: Any = None,
              seed: Any = None, **options: Any) -> StudyRequest:
        """Validate the options as ``tune`` takes them; InputError naming the first bad one.

        ``target`` (a :class:`shapewise.Target`) or its fields one by one (``gpu``, or
        ``profile``, a profile file, for it; ``dtype``, ``seq_len``, ``micro_batch``,
        ``tp``), each of which a joining worker may leave out; ``options`` also hold the
        other positive integers (vocab_size, image_size, ...).
        """
        fields = {k: options.pop(k) for k in TARGET_KEYWORDS if k in options}
        if params is not None and (isinstance(params, bool) or not isinstance(
                params, numbers.Real) or not math.isfinite(params) or params <= 0):
            raise InputError(f"params: must be a positive number of parameters, got {params!r}")
        if arch is not None and arch not in ("gpt", "llama", "vit"):
            raise InputError(f"arch: must be 'gpt', 'llama' or 'vit', got {arch!r}")
        if target is not None:
            t = target_from(target, fields, takes=TARGET_KEYWORDS, by="tune")
            t.require_only((), by="tune")
            given = {"gpu": t.gpu, "system": t.system, "dtype": t.dtype, "seq_len": t.seq_len,
                     "micro_batch": t.micro_batch, "tp": t.tp}
        else:
            t, given = None, _partial_target(**fields)
        ints = {k: positive_int(k, options.get(k)) for k in _COUNTS if k not in given}
        if seed is not None and (isinstance(seed, bool) or not isinstance(
                seed, numbers.Integral) or not 0 <= seed < 2**32):
            raise InputError(f"seed: must be an integer in [0, 2**32 - 1], got {seed!r}")
        return cls(params=None if params is None else float(params), target=t, arch=arch,
                   seed=None if seed is None else int(seed), **given, **ints)

    def asked(self) -> dict[str, Any]:
        """The options a joining worker's study must have been created with (None: any)."""
        return {"params": self.params, "arch": self.arch,
                "gpu": None if self.gpu is None else self.gpu.id, "dtype": self.dtype,
                **{k: getattr(self, k) for k in _COUNTS if k != "search_trials"},
                "seed": self.seed}

    def require_creatable(self, study: str) -> None:
        """InputError naming --params or --gpu unless this request can create ``study``."""
        if self.params is None:
            raise InputError(f"--params: study {study!r} does not exist yet; its first worker "
                             "needs the parameter budget (and --gpu) to create it")
        if self.gpu is None:
            raise InputError(f"--gpu: study {study!r} does not exist yet; its first worker "
                             "needs the GPU the analytic search predicts for (or --profile)")

    def config(self) -> dict[str, Any]:
        """The study's options with the defaults filled in, as the study stores them."""
        assert self.params is not None and self.gpu is not None
        k = self.top_k or DEFAULT_TOP_K
        arch = self.arch or "gpt"
        # the arch's tokenizer, as recommend assumes it (a Llama never gets GPT-2's 50257)
        vocab = self.vocab_size or Constraints().vocab(arch)[0] or 50257
        return {"format": FORMAT, "params": self.params, "arch": arch,
                "gpu": self.gpu.id, "dtype": self.dtype or "bf16",
                "seq_len": self.seq_len or default_seq_len()[0],
                "micro_batch": self.micro_batch or 1,
                "tp": self.tp or 1, "vocab_size": vocab,
                "image_size": self.image_size or 224, "patch_size": self.patch_size or 16,
                "top_k": k, "n_trials": self.n_trials or k, "seed": int(self.seed or 0),
                "search_trials": self.search_trials}

    def stage_one_target(self, config: Mapping[str, Any]) -> Target:
        """The target stage one prices under: the one given whole, else the one the study's
        ``config`` (this worker's options, defaults filled) names, built once here."""
        if self.target is not None:
            return self.target
        return make_target(gpu=self.system, dtype=config["dtype"], seq_len=config["seq_len"],
                           micro_batch=config["micro_batch"], tp=config["tp"])


def _partial_target(*, gpu: Any = None, profile: Any = None, dtype: Any = None,
                    **counts: Any) -> dict[str, Any]:
    """The target fields a worker gave one by one, each validated as make_target would
    (a joining worker may give any of them, the GPU included, or none)."""
    g = system = None
    if profile is not None or gpu is not None:
        g, system, _ = resolve_hardware(gpu, profile=profile)
    return {"gpu": g, "system": system,
            "dtype": None if dtype is None else canonical_dtype(dtype),
            **{k: positive_int(k, counts.get(k)) for k in ("seq_len", "micro_batch", "tp")}}


# ------------------------------------------------------------------------- the study
def _create(request: StudyRequest, study: str, say: Callable[[str], None]
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Stage one for a new study: its full config and its candidates."""
    request.require_creatable(study)
    assert request.gpu is not None
    full = request.config()
    say(f"study {study!r}: analytic search for {full['params']:.3g} params on "
        f"{request.gpu.name}")
    # fewer trials than finalists: the ones predicted best are measured
    cands = finalists(full, request.stage_one_target(full),
                      request.search_trials)[:full["n_trials"]]
    full["candidates"] = len(cands)
    say(f"study {study!r}: {len(cands)} finalists")
    return full, cands


def open_or_create(storage: optuna.storages.BaseStorage, name: str, request: StudyRequest,
                   pruner: optuna.pruners.BasePruner, say: Callable[[str], None]
                   ) -> tuple[optuna.Study, bool]:
    """Load study ``name``, or create it from ``request`` (stage one runs here: the
    analytic search's finalists become its candidates). True when this worker created it.

    Creation is first-come: ``create_study`` fails for every worker but one
    (DuplicatedStudyError), and those load the study and wait for its candidates.
    """
    sampler = optuna.samplers.RandomSampler(seed=0)  # every trial's params are fixed
    kwargs = {"study_name": name, "storage": storage, "sampler": sampler, "pruner": pruner}
    try:
        study = optuna.load_study(**kwargs)
    except KeyError:
        full, cands = _create(request, name, say)
        try:
            study = optuna.create_study(direction="maximize", load_if_exists=False, **kwargs)
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(**kwargs)
        else:
            study.set_user_attr(CONFIG, full)
            study.set_user_attr(CANDIDATES, cands)
            k = len(cands)
            for i in range(full["n_trials"]):
                study.enqueue_trial({"candidate": i % k}, skip_if_exists=False)
            study.set_user_attr(READY, True)
            say(f"study {name!r} created: {full['n_trials']} trials enqueued")
            return study, True
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    said = False
    while not study.user_attrs.get(READY):
        if time.monotonic() > deadline:
            raise InputError(
                f"--study: {name!r} exists but its candidates never arrived (its creator died "
                "while setting it up?): delete it with 'optuna delete-study' or use another "
                "--study")
        if not said:
            say(f"waiting for the creator of study {name!r} to store its candidates")
            said = True
        time.sleep(0.2)
    _check_config(study.user_attrs[CONFIG], request.asked(), name)
    return study, False


def _check_config(stored: Mapping[str, Any], asked: Mapping[str, Any], name: str) -> None:
    if stored.get("format") != FORMAT:
        raise InputError(f"--study: {name!r} was not made by this version of shapewise tune "
                         f"(format {stored.get('format')!r}, expected {FORMAT!r})")
    diff = [f"{k}={stored.get(k)!r} (asked {v!r})" for k, v in asked.items()
            if v is not None and stored.get(k) != v]
    if diff:
        raise InputError(f"--study: {name!r} was created with " + ", ".join(diff)
                         + ": use the same options (or leave them out) or another --study")


def finalists(config: dict[str, Any], target: Target | GPU, search_trials: int | None
              ) -> list[dict[str, Any]]:
    """Stage one: the analytic search's top-k on ``target`` (a GPU: the target the study's
    ``config`` names on it), each with its prediction of the measured part."""
    if not isinstance(target, Target):
        target = make_target(gpu=target, dtype=config["dtype"], seq_len=config["seq_len"],
                             micro_batch=config["micro_batch"], tp=config["tp"])
    rec = recommend_shape(
        params=config["params"], target=target, vocab_size=config["vocab_size"],
        arch=config["arch"], n_trials=search_trials, seed=config["seed"],
        top_k=config["top_k"], image_size=config["image_size"],
        patch_size=config["patch_size"])
    out = []
    for i, c in enumerate(rec.candidates):
        est = c.estimate
        if est.recompute:  # the measured step never recomputes
            plain = replace(target, seq_len=est.seq_len)
            est = price_step(c.shape, make_setup(c.shape, target=plain, plan=Plan(
                micro_batch=est.micro_batch, tp=est.tp)))
        layer_s, head_s = predicted_parts(est)
        step_s = c.shape.num_hidden_layers * layer_s + head_s
        tps = tokens_per_s(step_s, est.micro_batch, est.seq_len, est.tp)
        n = count_params(c.shape)
        out.append({
            "index": i, "shape": c.shape.to_dict(), "params": n, "seq_len": est.seq_len,
            "predicted": {"layer_s": layer_s, "head_s": head_s, "step_s": step_s,
                          "tokens_per_s": tps, "score": tps * n / config["params"],
                          "model_tokens_per_s": est.tokens_per_s,
                          "calibration": est.calibration},
            "reason": c.reason,
        })
    return out
