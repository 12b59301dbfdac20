"""QAModule: training mode, optimizer groups, schedule, evaluation gather."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from qa_lightning import QAModule, SquadDataModule
from qa_lightning.hf import optimizer_groups
from conftest import TINY_BERT, TINY_DEV, TINY_TRAIN


def test_pretrained_encoder_trains_with_dropout_on(tmp_path):
    """from_pretrained returns eval mode; the recipe trains with dropout: the encoder must be in train mode."""
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    model_dir = tmp_path / "pretrained"
    AutoModelForQuestionAnswering.from_config(AutoConfig.from_pretrained(TINY_BERT)).save_pretrained(model_dir)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (model_dir / f).write_bytes((TINY_BERT / f).read_bytes())
    module = QAModule(model_name_or_path=str(model_dir))
    seen = []

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(all(m.training for m in pl_module.model.modules()))

    dm = SquadDataModule(model_name_or_path=str(model_dir), train_file=str(TINY_TRAIN), validation_file=str(TINY_DEV),
                         max_length=128, stride=32, cache_dir=str(tmp_path / "cache"), num_workers=0)
    trainer = L.Trainer(accelerator="cpu", max_steps=3, val_check_interval=2, limit_val_batches=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, callbacks=[Probe()],
                        default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    assert seen == [True, True, True]  # also after the validation at step 2


def test_no_weight_decay_on_bias_and_layernorm():
    module = QAModule(model_name_or_path=str(TINY_BERT), pretrained=False)
    decay, plain = optimizer_groups(module.model, 0.01)
    names = {id(p): n for n, p in module.model.named_parameters()}
    assert all(not names[id(p)].endswith("bias") and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in plain["params"])
    assert decay["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert len(decay["params"]) + len(plain["params"]) == len(list(module.model.parameters()))


def test_linear_schedule_with_warmup(tmp_path):
    module = QAModule(model_name_or_path=str(TINY_BERT), pretrained=False, learning_rate=1e-3, warmup_ratio=0.25)
    dm = SquadDataModule(model_name_or_path=str(TINY_BERT), train_file=str(TINY_TRAIN), validation_file=str(TINY_DEV),
                         max_length=128, stride=32, cache_dir=str(tmp_path / "cache"), num_workers=0,
                         max_train_samples=64)
    lrs = []

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = L.Trainer(accelerator="cpu", max_steps=8, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, callbacks=[Probe()], default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    assert lrs[0] == 0.0 and lrs[1] == 0.5e-3 and lrs[2] == 1e-3  # 2 warm-up steps of 8
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] > 0


def test_gradient_clipping_works_with_fused_adamw_under_mixed_precision(tmp_path):
    """Lightning refuses to clip with fused optimizers under AMP; we clip ourselves (the default on CUDA)."""
    module = QAModule(model_name_or_path=str(TINY_BERT), pretrained=False, learning_rate=1e-3, fused_adamw=True)
    dm = SquadDataModule(model_name_or_path=str(TINY_BERT), train_file=str(TINY_TRAIN), validation_file=str(TINY_DEV),
                         max_length=128, stride=32, cache_dir=str(tmp_path / "cache"), num_workers=0,
                         max_train_samples=32)
    norms = []

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # after clip and step
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())

    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=3, gradient_clip_val=0.01,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[Probe()], default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    assert trainer.optimizers[0].defaults["fused"]
    assert len(norms) == 3 and all(n <= 0.01 * 1.01 for n in norms)


def test_evaluate_metric_is_checked_at_construction_not_after_an_epoch():
    """--model.metric evaluate offline: one QAInputError when the module is built (the CLI prints it, exit 2)."""
    import pytest

    from qa_lightning.errors import QAInputError

    try:
        QAModule(model_name_or_path=str(TINY_BERT), pretrained=False, metric="evaluate")
    except QAInputError as err:
        assert str(err).startswith("--model.metric evaluate: could not load evaluate's 'squad' metric")
    else:
        pytest.skip("evaluate's squad metric loads here (online or cached)")


def _fit_logged(tmp_path, every: int, max_train_samples: int = 24):
    """Fit one epoch with a CSV logger writing every ``every`` steps; returns (metrics.csv rows, step losses seen,
    batch sizes)."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    module = QAModule(model_name_or_path=str(TINY_BERT), pretrained=False, learning_rate=1e-3)
    dm = SquadDataModule(model_name_or_path=str(TINY_BERT), train_file=str(TINY_TRAIN), validation_file=str(TINY_DEV),
                         max_length=128, stride=32, batch_size=8, cache_dir=str(tmp_path / "cache"), num_workers=0,
                         max_train_samples=max_train_samples)
    losses, sizes = [], []

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))
            sizes.append(len(batch["input_ids"]))

    logger = CSVLogger(str(tmp_path), name="logs")
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_val_batches=0, logger=logger, log_every_n_steps=every,
                        enable_checkpointing=False, enable_progress_bar=False, callbacks=[Probe()],
                        default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    with open(f"{logger.log_dir}/metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh)), losses, sizes


def test_step_loss_on_logging_steps_and_sample_weighted_epoch_mean(tmp_path):
    """The step loss is logged on the steps the logger writes (log_every_n_steps), the epoch mean of every step."""
    rows, losses, sizes = _fit_logged(tmp_path, every=1)
    steps = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    assert len(steps) == len(losses) > 2 and steps == [pytest.approx(x, rel=1e-6) for x in losses]
    epoch = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    expected = sum(x * n for x, n in zip(losses, sizes)) / sum(sizes)
    assert epoch == [pytest.approx(expected, rel=1e-5)]

    rows, losses, _ = _fit_logged(tmp_path / "every3", every=3)
    steps = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    assert steps == [s for s in range(len(losses)) if (s + 1) % 3 == 0] and steps
    assert [r for r in rows if r.get("train/loss_epoch")]
