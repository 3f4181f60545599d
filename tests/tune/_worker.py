"""A ``tune`` worker for the tests, with a fake measurement that needs no torch.

As a script: ``python _worker.py '{"study": ..., "storage": ..., ..., "fake": {...}}'`` runs
``shapewise.tuning.tune(**keywords)`` and prints the report as JSON on its last line.
``fake`` (optional) replaces the timing:

- ``sleep_s``: seconds each trial takes (spread over its repeats);
- ``slow_first_s``: seconds the first trial of this process takes instead (to be killed);
- ``order``: "predicted" (measured = predicted: rho +1) or "reversed" (rho −1);
- ``remote``: this process claims to run on another host, so other workers can tell it
  died only by its heartbeat.

Without ``fake`` the real torch measurement runs.
"""

from __future__ import annotations

import json
import sys
import time
from types import SimpleNamespace
from typing import Any


def fake_measure(*, budget: float, sleep_s: float = 0.2, slow_first_s: float = 0.0,
                 order: str = "predicted", gpu: str = "h100") -> Any:
    """A stand-in for ``shapewise.tuning.trial._measure``: timings derived from the prediction."""
    from shapewise.model.params import count_params
    from shapewise.step import estimate
    from shapewise.tuning import predicted_parts

    calls = {"n": 0}

    def measure(shape: Any, *, micro_batch: int, seq_len: int, tp: int, device: str,
                dtype: str, repeats: int) -> Any:
        first = calls["n"] == 0
        calls["n"] += 1
        est = estimate(shape, gpu=gpu, micro_batch=micro_batch, seq_len=seq_len, tp=tp)
        layer, head = predicted_parts(est)
        L = shape.num_hidden_layers
        if order == "reversed":  # measured score = 1e9 / predicted score
            n = count_params(shape)
            pred_tps = micro_batch * seq_len / (L * layer + head) / tp
            want_tps = 1e9 / (pred_tps * n / budget) * budget / n
            layer, head = micro_batch * seq_len / want_tps / tp / L, 0.0
        pause = (slow_first_s if first and slow_first_s else sleep_s) / repeats
        for _ in range(repeats):
            time.sleep(pause)
            yield SimpleNamespace(block_s=layer, head_s=head, block_spread_s=0.0, n_runs=1,
                                  method="fake")

    return measure


def main(argv: list[str]) -> int:
    import shapewise.tuning as tuning
    from shapewise.tuning import liveness, trial

    kw = json.loads(argv[1])
    fake = kw.pop("fake", None)
    if fake is not None:
        if fake.pop("remote", False):
            liveness.host_id = lambda: {"host": "elsewhere", "pidns": None}
        trial._measure = fake_measure(budget=float(kw.get("params") or 0) or 1.0, **fake)  # type: ignore[attr-defined]
    report = tuning.tune(**kw)
    print(json.dumps(report.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
