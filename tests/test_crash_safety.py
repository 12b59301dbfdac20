"""crash_safety.py and the atomic checkpoint writer: a crash while saving leaves the previous checkpoint whole; a first
Ctrl-C is noted, a second aborts at once; the resume command said on an interruption is the user's own ``fit`` with
``--ckpt_path last``. The interrupted runs themselves, resumed: ``test_resume_interrupted.py``."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
import torch

from qa_lightning.crash_safety import AtomicCheckpointIO
from qa_lightning.crash_safety import CrashSafety, resume_command


def test_atomic_checkpoint_survives_a_crash_while_saving(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    def crash(obj, fh, *a, **k):
        fh.write(b"partial bytes")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1  # the previous checkpoint is intact


def test_second_ctrl_c_aborts_at_once():
    before = signal.getsignal(signal.SIGINT)
    safety = CrashSafety()
    safety.on_train_start(SimpleNamespace(is_global_zero=False), None)
    try:
        signal.raise_signal(signal.SIGINT)  # the first: noted, training goes on to the end of the batch
        assert safety._ctrl_c
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # the second: abort now
    finally:
        safety._restore_handler()
    assert signal.getsignal(signal.SIGINT) is before


def test_resume_command_is_the_users_fit_with_ckpt_path_last():
    argv = ["fit", "--config", "my config.yaml", "--ckpt_path", "old.ckpt", "--data.batch_size=4", "--ckpt_path=x"]
    assert resume_command(argv) == ("python -m qa_lightning fit --config 'my config.yaml' --data.batch_size=4 "
                                    "--ckpt_path last")
    assert resume_command(["--help"]) == "python -m qa_lightning fit ... --ckpt_path last"


def test_a_run_resumed_mid_epoch_logs_the_whole_epochs_mean_loss(tmp_path):
    """ExactResume carries the epoch's running loss and the RNG states (dropout on) over a mid-epoch resume: the
    resumed epoch's train/loss_epoch is the uninterrupted run's mean over all its batches, not over the rest."""
    import csv

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from qa_lightning import QAModule, SquadDataModule
    from conftest import TINY_BERT, TINY_DEV, TINY_TRAIN

    mid = tmp_path / "mid.ckpt"

    class SaveMidEpoch(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 3:
                trainer.save_checkpoint(mid)

    def fit(name, callbacks=(), ckpt_path=None):
        L.seed_everything(0)
        module = QAModule(model_name_or_path=str(TINY_BERT), pretrained=False, learning_rate=1e-3)
        dm = SquadDataModule(model_name_or_path=str(TINY_BERT), train_file=str(TINY_TRAIN),
                             validation_file=str(TINY_DEV), max_length=128, stride=32, batch_size=8,
                             cache_dir=str(tmp_path / "cache"), num_workers=0, max_train_samples=48)
        logger = CSVLogger(str(tmp_path), name=name)
        trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_val_batches=0, logger=logger, deterministic=True,
                            enable_checkpointing=False, enable_progress_bar=False, callbacks=list(callbacks),
                            default_root_dir=str(tmp_path / name))
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        with open(f"{logger.log_dir}/metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        return [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")], trainer.global_step

    full, steps = fit("full", [SaveMidEpoch()])
    assert steps > 4 and mid.is_file()  # saved in the middle of the epoch
    resumed, resumed_steps = fit("resumed", ckpt_path=str(mid))
    assert resumed_steps == steps and len(full) == len(resumed) == 1
    assert resumed[0] == pytest.approx(full[0], rel=1e-6)
