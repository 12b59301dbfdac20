"""Ctrl-C, copied run folders and resumes: an interrupted, copied and resumed run ends exactly as the uninterrupted one
(weights, export, metrics.csv), in one process and under 2-process DDP."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from qa_lightning.crash_safety import CrashSafety, resume_command
from conftest import ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
# lr 3e-2: the tiny model gets worse in epoch 1 (val/f1 1.81 -> 0.42), so the best checkpoint is epoch 0's and the
# export must not be the last state.
LR = ["--model.learning_rate", "3e-2"]


def fit_cmd(root: Path, cache: Path, *extra) -> list:
    return [sys.executable, "-m", "qa_lightning", "fit", "--config", "configs/debug.yaml",
            "--trainer.default_root_dir", root, "--data.cache_dir", cache, "--trainer.enable_progress_bar", "false",
            "--data.batch_size", "4", "--trainer.deterministic", "true", *LR, *extra]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def val_rows(metrics: Path) -> list[tuple[str, str]]:
    return [(r["epoch"], r["val/f1"]) for r in csv.DictReader(metrics.open()) if r.get("val/f1")]


def interrupt_when(proc: subprocess.Popen, ready, timeout: float = 300) -> tuple[int, str]:
    t0 = time.time()
    while not ready():
        assert proc.poll() is None, "training ended before it could be interrupted"
        assert time.time() - t0 < timeout, "no checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


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


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(fit_cmd(tmp / "root", tmp / "cache"), cwd=ROOT, env=ENV, check=True, capture_output=True,
                   timeout=900)
    return tmp


@pytest.fixture(scope="module")
def interrupted(uninterrupted, tmp_path_factory):
    """The same run, Ctrl-C in epoch 1 as soon as epoch 0's checkpoint exists: (root, saved last.ckpt, output)."""
    root = tmp_path_factory.mktemp("interrupted") / "root"
    proc = subprocess.Popen(fit_cmd(root, uninterrupted / "cache"), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    run = root / "lightning_logs" / "version_0" / "checkpoints"
    status, out = interrupt_when(proc, lambda: any(run.glob("epoch0-*.ckpt")))
    assert status == 130, out[-3000:]
    return root, load(run / "last.ckpt"), out


def assert_same_run(full: Path, resumed: Path) -> None:
    """Final weights, export (epoch 0's: the best) and metrics.csv equal to the uninterrupted run's."""
    assert max_diff(load(full / "checkpoints/last.ckpt")["state_dict"],
                    load(resumed / "checkpoints/last.ckpt")["state_dict"]) <= 1e-6
    assert max_diff(load_file(full / "export/model.safetensors"), load_file(resumed / "export/model.safetensors")) <= 1e-6
    source = json.loads((resumed / "export/qa_lightning.json").read_text())["source_checkpoint"]
    assert Path(source).parent == resumed / "checkpoints" and Path(source).name.startswith("epoch0-")
    # One metrics.csv with both epochs' validation, row for row the uninterrupted run's (curves drawn from it).
    assert val_rows(resumed / "metrics.csv") == val_rows(full / "metrics.csv") and len(val_rows(full / "metrics.csv")) == 2
    assert (resumed / "metrics.csv").read_text() == (full / "metrics.csv").read_text()
    assert (resumed / "learning_curves.png").is_file()


@pytest.mark.slow
def test_ctrl_c_in_epoch_1_copy_and_resume_equal_the_uninterrupted_run(uninterrupted, interrupted, tmp_path):
    full = uninterrupted / "root" / "lightning_logs" / "version_0"
    assert [p.name for p in (full / "checkpoints").glob("epoch*.ckpt")][0].startswith("epoch0-")  # best: epoch 0
    root, saved, out = interrupted
    run = root / "lightning_logs" / "version_0" / "checkpoints"
    assert saved["epoch"] == 1 and saved["global_step"] > 65  # past epoch 0's end (65 steps of 4)
    line = next(ln for ln in out.splitlines() if ln.startswith("Interrupted (Ctrl-C): saved "))
    assert f"saved {run / 'last.ckpt'} at global step {saved['global_step']} (epoch 1); resume with: python -m " \
           f"qa_lightning fit --config configs/debug.yaml --trainer.default_root_dir {root}" in line
    assert line.endswith("--ckpt_path last") and "Traceback" not in out

    copy = tmp_path / "copy"  # cp -r: every file gets a new time; the epoch checkpoint is made the newest file
    shutil.copytree(root, copy, copy_function=shutil.copy)
    os.utime(copy / "lightning_logs/version_0/checkpoints/last.ckpt", (1_000, 1_000))
    done = subprocess.run(fit_cmd(copy, uninterrupted / "cache", "--ckpt_path", "last"), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = copy / "lightning_logs" / "version_0"
    assert (f"Resuming from {resumed / 'checkpoints' / 'last.ckpt'} (global step {saved['global_step']}, epoch 1"
            in done.stderr)
    assert f"fit --ckpt_path: continuing the run in {resumed} " in done.stderr
    assert [p.name for p in (copy / "lightning_logs").iterdir()] == ["version_0"]  # one run, one folder
    assert_same_run(full, resumed)


@pytest.mark.slow
def test_resumed_into_another_root_carries_the_best_checkpoint_and_the_metrics(uninterrupted, interrupted, tmp_path):
    root, saved, _ = interrupted
    ckpt = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    done = subprocess.run(fit_cmd(tmp_path, uninterrupted / "cache", "--ckpt_path", ckpt), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = tmp_path / "lightning_logs" / "version_0"
    assert f"metrics.csv rows of {root / 'lightning_logs' / 'version_0'} carried over into this run's folder" \
           in done.stderr
    assert "carried the checkpoint " in done.stderr and not list(root.glob("lightning_logs/version_1"))
    assert_same_run(uninterrupted / "root" / "lightning_logs" / "version_0", resumed)


@pytest.mark.slow
def test_ddp_ctrl_c_saves_on_every_rank_and_resumes_exactly(uninterrupted, tmp_path):
    ddp = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--crash_safety.every_n_train_steps", "5"]
    cache = uninterrupted / "cache"
    full, root = tmp_path / "full", tmp_path / "root"
    subprocess.run(fit_cmd(full, cache, *ddp), cwd=ROOT, env=ENV, check=True, capture_output=True, timeout=900)
    # Ctrl-C reaches rank 0 only (a terminal sends it to every rank; either way the ranks agree at a batch end).
    proc = subprocess.Popen(fit_cmd(root, cache, *ddp), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    last = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"

    def past_step_40():  # epoch 1 (33 steps of 2 x 4 per epoch)
        try:
            return last.is_file() and load(last)["global_step"] >= 40
        except Exception:  # being replaced right now
            return False

    status, out = interrupt_when(proc, past_step_40)
    assert status == 130, out[-3000:]
    saved = load(last)
    assert saved["epoch"] == 1 and saved["SquadDataModule"]["mid_epoch"] and len(saved["qa_lightning_rng_ranks"]) == 2
    assert out.count("Interrupted (Ctrl-C): saved ") == 1  # rank 0 speaks
    done = subprocess.run(fit_cmd(root, cache, *ddp, "--ckpt_path", "last"), cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = load(full / "lightning_logs/version_0/checkpoints/last.ckpt"), load(last)
    assert a["global_step"] == b["global_step"] == 66
    assert max_diff(a["state_dict"], b["state_dict"]) <= 1e-6
