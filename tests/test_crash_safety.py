"""crash_safety.py and the atomic checkpoint writer: a crash while saving leaves the previous checkpoint whole; a first
Ctrl-C is noted, a second aborts at once; the resume command said on an interruption is the user's own ``fit`` with
``--ckpt_path last``. The interrupted runs themselves, resumed: ``test_resume_interrupted.py``."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
import torch

from qa_lightning.callbacks import AtomicCheckpointIO
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
