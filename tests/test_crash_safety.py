"""Crash-safe training: SIGKILL mid-epoch (or an epoch end) + resume == uninterrupted run; SIGTERM saves and exits 0;
atomic saves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from qa_lightning.callbacks import AtomicCheckpointIO
from qa_lightning.data.samplers import EpochSampler, LengthGroupedSampler
from conftest import ROOT


def fit_cmd(tmp: Path, cache: Path, *extra):
    return [sys.executable, "-m", "qa_lightning", "fit", "--config", "configs/debug.yaml",
            "--trainer.default_root_dir", tmp, "--trainer.logger.init_args.save_dir", tmp, "--data.cache_dir", cache,
            "--trainer.enable_progress_bar", "false", "--data.batch_size", "2", "--trainer.deterministic", "true",
            "--crash_safety.every_n_train_steps", "10", *extra]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def last_ckpt(tmp: Path) -> Path:
    found = sorted(tmp.glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1]


def wait_for_step(tmp: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, "training ended before it could be interrupted"
        path = tmp / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
        if path.is_file():
            try:
                if torch.load(path, map_location="cpu", weights_only=True)["global_step"] >= step:
                    return
            except Exception:  # being replaced right now
                pass
        time.sleep(0.02)
    raise AssertionError("no step checkpoint appeared")


def max_weight_diff(a: Path, b: Path) -> float:
    sa = torch.load(a, map_location="cpu", weights_only=True)
    sb = torch.load(b, map_location="cpu", weights_only=True)
    assert sa["global_step"] == sb["global_step"]
    return max((sa["state_dict"][k] - sb["state_dict"][k]).abs().max().item() for k in sa["state_dict"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    # Every epoch's checkpoint is kept (written at the epoch end, like last.ckpt) for the epoch-boundary resume.
    subprocess.run(fit_cmd(tmp, tmp / "cache", "--checkpoint.save_top_k", "-1"), cwd=ROOT, env=ENV, check=True,
                   capture_output=True, timeout=600)
    return tmp


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_and_resumed_run_equals_uninterrupted(uninterrupted, tmp_path, sig):
    cache = uninterrupted / "cache"
    proc = subprocess.Popen(fit_cmd(tmp_path, cache), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait_for_step(tmp_path, 20, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    saved = torch.load(last_ckpt(tmp_path), map_location="cpu", weights_only=True)
    assert 20 <= saved["global_step"] < 125 and saved["epoch"] == 0  # mid-epoch (125 steps per epoch)
    if sig == signal.SIGTERM:
        assert proc.returncode == 0, err[-2000:]
        assert "SIGTERM received: saved" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    done = subprocess.run(fit_cmd(tmp_path, cache, "--ckpt_path", "last"), cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Resuming from" in done.stderr
    assert max_weight_diff(last_ckpt(uninterrupted), last_ckpt(tmp_path)) < 1e-6


@pytest.mark.slow
def test_resumed_from_an_epoch_end_equals_uninterrupted(uninterrupted, tmp_path):
    run = uninterrupted / "lightning_logs" / "version_0" / "checkpoints"
    epoch_end = next(run.glob("epoch0-*.ckpt"))
    saved = torch.load(epoch_end, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 0 and saved["SquadDataModule"]["mid_epoch"] is False  # the end of epoch 0
    done = subprocess.run(fit_cmd(tmp_path, uninterrupted / "cache", "--ckpt_path", epoch_end), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert max_weight_diff(last_ckpt(uninterrupted), last_ckpt(tmp_path)) < 1e-6


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


@pytest.mark.parametrize("cls", ["epoch", "grouped"])
def test_samplers_are_deterministic_per_epoch_and_skip_on_resume(cls):
    lengths = np.random.default_rng(0).integers(10, 300, size=103)
    skips = {}

    def make():
        if cls == "epoch":
            return EpochSampler(len(lengths), seed=3, skip_fn=lambda e: skips.pop(e, 0))
        return LengthGroupedSampler(lengths, 8, seed=3, mega_factor=2, skip_fn=lambda e: skips.pop(e, 0))

    s = make()
    s.set_epoch(1)
    full = list(s)
    s.set_epoch(2)
    assert list(s) != full and sorted(list(s)) == list(range(103))
    resumed = make()
    resumed.set_epoch(1)
    skips[1] = 24
    assert list(resumed) == full[24:]
    assert list(resumed) == full  # the skip applies once


@pytest.mark.parametrize("epoch", [0, 3])
def test_ddp_shards_as_lightning_does_and_each_rank_resumes_at_its_own_batch(epoch):
    """ShardedSampler gives each rank what Lightning's DistributedSamplerWrapper gives it for a training sampler
    (so uninterrupted DDP runs are unchanged) and, resumed after 5 batches of 4 on each of 2 ranks, the rest of it."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    from qa_lightning.data.samplers import ShardedSampler

    lengths = np.random.default_rng(0).integers(10, 300, size=103)  # odd: DistributedSampler pads one index
    skips = {}

    def grouped():
        return LengthGroupedSampler(lengths, 4, seed=3, epoch_fn=lambda: epoch, skip_fn=lambda e: skips.pop(e, 0))

    for rank in (0, 1):
        lightning = DistributedSamplerWrapper(grouped(), num_replicas=2, rank=rank, shuffle=True, seed=42)
        lightning.set_epoch(epoch)  # what Lightning does for a training loader under DDP
        ours = ShardedSampler(grouped(), num_replicas=2, rank=rank, seed=42)
        full = list(ours)
        assert full == list(lightning) and len(full) == len(ours) == 52
        skips[epoch] = 5 * 4 * 2
        assert list(ours) == full[20:]
