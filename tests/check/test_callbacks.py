"""The trainer callbacks, run inside the real Hugging Face Trainer and Lightning Trainer.

A one-step CPU training run of a tiny GPT-2 (vocab 50257) must warn SW001 at train start.
The packages are test dependencies (transformers + accelerate, lightning): these tests skip
only where they are missing.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from shapewise import ShapewiseWarning
from shapewise.check.api import ShapeCheckError

torch = pytest.importorskip("torch")


def _shapewise_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ShapewiseWarning)]


def test_hf_trainer_callback_warns_at_train_start(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from shapewise.check.callbacks import ShapewiseCallback

    class Tokens(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> dict[str, Any]:
            ids = torch.arange(32) + i
            return {"input_ids": ids, "labels": ids}

    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=1, n_embd=64, n_head=2, n_positions=32))
    callback = ShapewiseCallback(gpu="a100", seq_len=32)
    assert isinstance(callback, transformers.TrainerCallback)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, report_to=[],
        use_cpu=True, save_strategy="no", logging_strategy="no", disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(),
                                   callbacks=[callback])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    messages = _shapewise_warnings(caught)
    assert any("SW001" in m and "lm_head" in m and "50304" in m for m in messages), messages
    assert callback.findings is not None
    lm = next(f for f in callback.findings if f.rule_id == "SW001")
    assert lm.fix == 50304
    # the micro-batch came from per_device_train_batch_size: 2 × 32 tokens
    assert "64×50257×64" in lm.detail


def test_hf_trainer_callback_can_stop_the_run(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from shapewise.check.callbacks import ShapewiseCallback

    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=1, n_embd=64, n_head=2, n_positions=32))
    callback = ShapewiseCallback(gpu="a100", seq_len=32, on_finding="raise")

    class State:
        is_world_process_zero = True

    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[],
                                          use_cpu=True, per_device_train_batch_size=4)
    with pytest.raises(ShapeCheckError, match="SW001"):
        callback.on_train_begin(args, State(), None, model=model)
    State.is_world_process_zero = False  # other ranks stay silent
    callback.on_train_begin(args, State(), None, model=model)


def test_lightning_callback_warns_at_train_start() -> None:
    pl = pytest.importorskip("lightning.pytorch")
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_gpt import GPT, GPTConfig

    from shapewise.check.callbacks import ShapewiseLightningCallback

    class LM(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = GPT(GPTConfig(n_layer=1, n_embd=64, n_head=2, block_size=32))

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.model(idx)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            (x,) = batch
            return self(x).float().mean()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randint(0, 50257, (8, 32))), batch_size=4)
    callback = ShapewiseLightningCallback(gpu="a100", seq_len=32)
    assert isinstance(callback, pl.Callback)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(LM(), data)
    messages = _shapewise_warnings(caught)
    assert any("SW001" in m and "model.lm_head" in m for m in messages), messages
    lm = next(f for f in callback.findings or [] if f.rule_id == "SW001")
    assert "128×50257×64" in lm.detail  # micro-batch 4 from the DataLoader, 32 tokens


def test_untraceable_module_warns_and_training_goes_on() -> None:
    pytest.importorskip("lightning.pytorch")
    from shapewise.check.callbacks import ShapewiseLightningCallback

    class Trainer:
        is_global_zero = True
        train_dataloader = None

    mlp = torch.nn.Sequential(torch.nn.Linear(8, 8))  # no embedding, no example input
    callback = ShapewiseLightningCallback(gpu="a100")
    with pytest.warns(ShapewiseWarning, match="shape check skipped: example_input"):
        callback.on_train_start(Trainer(), mlp)
    assert callback.findings == []
    mlp.example_input_array = torch.randn(4, 8)  # what LightningModules carry
    callback.on_train_start(Trainer(), mlp)
    assert callback.findings is not None
    strict = ShapewiseLightningCallback(gpu="a100", on_finding="raise")
    with pytest.raises(ValueError, match="example_input"):
        strict.on_train_start(Trainer(), torch.nn.Sequential(torch.nn.Linear(8, 8)))


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import shapewise.check.callbacks as cb

    for name in ("ShapewiseCallback", "ShapewiseLightningCallback"):  # built on first use
        monkeypatch.delitem(vars(cb), name, raising=False)
    for package in ("transformers", "lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, package, None)  # None: "import ... halted"
    with pytest.raises(ImportError, match="pip install transformers"):
        cb.ShapewiseCallback  # noqa: B018
    with pytest.raises(ImportError, match="pip install lightning"):
        cb.ShapewiseLightningCallback  # noqa: B018
    with pytest.raises(AttributeError):
        cb.NoSuchCallback  # noqa: B018
