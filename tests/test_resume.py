"""Resuming, ``fit --ckpt_path last|FILE`` (and ``validate --ckpt_path last``): the rules of resume.py and
checkpoints.py (a damaged or foreign checkpoint is one sentence; 'last' takes the newest loadable state; mid-epoch
positions are refused on other batches; a moved run folder keeps its best-checkpoint record), then the runs: a
resumed run continues its folder, its schedule and its metrics.csv; broken checkpoints, another architecture or other
features are refused in one line; the command line wins over the checkpoint's settings.

Interrupted runs (Ctrl-C, SIGTERM, SIGKILL) resumed to the uninterrupted result: ``test_resume_interrupted.py``."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time

import pytest
import torch

from qa_lightning.errors import QAInputError
from qa_lightning.checkpoints import reroot_record
from qa_lightning.resume import (UnusableCheckpoint, check_same_position, find_last_checkpoint, position_identity,
                                 read_checkpoint)
from conftest import TINY_BERT, abs_args, debug_args, one_error_line, run_cli, run_elsewhere, versions


def good_checkpoint(path, step=7, epoch=0):
    torch.save({"pytorch-lightning_version": "2.6.6", "global_step": step, "epoch": epoch,
                "state_dict": {"model.qa_outputs.weight": torch.zeros(2, 4)},
                "hyper_parameters": {"model_name_or_path": "tiny"}}, path)
    return path


def damage(kind: str, path, good):
    if kind == "garbage":
        path.write_bytes(b"x" * 200 + os.urandom(300))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "bare_state_dict":
        torch.save({"qa_outputs.weight": torch.zeros(2, 4)}, path)
    elif kind == "no_lightning_version":
        torch.save({"state_dict": {"model.w": torch.zeros(1)}, "hyper_parameters": {"model_name_or_path": "x"}}, path)
    elif kind == "other_project":
        torch.save({"pytorch-lightning_version": "2.6.6", "state_dict": {"net.0.weight": torch.zeros(1)},
                    "hyper_parameters": {"hidden": 3}, "hparams_name": "kwargs"}, path)
    return path


CASES = {"garbage": "not a PyTorch checkpoint", "empty": "the file is empty (0 bytes",
         "truncated": "truncated: the zip archive", "bare_state_dict": "holds model weights only",
         "no_lightning_version": "not a Lightning checkpoint (no 'pytorch-lightning_version')",
         "other_project": "a checkpoint of another LightningModule"}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_read_checkpoint_names_what_is_wrong(tmp_path, kind):
    good = good_checkpoint(tmp_path / "good.ckpt")
    bad = damage(kind, tmp_path / "bad.ckpt", good)
    with pytest.raises(UnusableCheckpoint) as err:
        read_checkpoint(bad)
    assert str(err.value).startswith(CASES[kind]) and "qa_lightning fit" in str(err.value)
    assert "\n" not in str(err.value)
    assert read_checkpoint(good)["global_step"] == 7


def test_missing_and_directory(tmp_path):
    with pytest.raises(UnusableCheckpoint, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(UnusableCheckpoint, match="is a directory"):
        read_checkpoint(tmp_path)


def test_last_skips_unloadable_newer_files(tmp_path):
    run0, run1 = tmp_path / "version_0" / "checkpoints", tmp_path / "version_1" / "checkpoints"
    run0.mkdir(parents=True), run1.mkdir(parents=True)
    good = good_checkpoint(run0 / "last.ckpt", step=3)
    time.sleep(0.02)
    damage("truncated", run1 / "last.ckpt", good)
    found, skipped = find_last_checkpoint([tmp_path, tmp_path / "missing"])
    assert found == str(good.resolve())
    assert skipped == [(str((run1 / "last.ckpt").resolve()), "truncated: the zip archive torch.save wrote has no end "
                        f"({good.stat().st_size // 2} bytes")]
    assert find_last_checkpoint([tmp_path / "missing"]) == (None, [])


def test_last_ranks_by_training_state_not_file_time(tmp_path):
    """After a copy every file has a new time: the step inside decides, then the epoch, then the name last.ckpt."""
    run = tmp_path / "version_0" / "checkpoints"
    run.mkdir(parents=True)
    last = good_checkpoint(run / "last.ckpt", step=76, epoch=1)
    epoch0 = good_checkpoint(run / "epoch0-f13.58.ckpt", step=65, epoch=0)
    os.utime(last, (1_000, 1_000))  # the copy wrote last.ckpt first: the older file time
    os.utime(epoch0, (2_000, 2_000))
    assert find_last_checkpoint([tmp_path]) == (str(last.resolve()), [])
    # Equal steps: the later epoch (an epoch-end state saved before the next epoch's first step has the same step)
    good_checkpoint(last, step=65, epoch=0)
    (tmp_path / "version_1").mkdir()
    other = good_checkpoint(tmp_path / "version_1" / "epoch1.ckpt", step=65, epoch=1)
    assert find_last_checkpoint([tmp_path])[0] == str(other.resolve())
    # Equal state: last.ckpt wins over the epoch checkpoint, whatever the file times and names.
    other.unlink()
    os.utime(last, (1_000, 1_000))
    assert find_last_checkpoint([tmp_path])[0] == str(last.resolve())


def test_mid_epoch_position_on_other_batches_is_refused():
    settings = {"max_length": 192, "stride": 64, "batch_size": 2, "seed": 42, "group_by_length": True,
                "train_file": "train.json", "model_name_or_path": "tiny"}
    saved = {**position_identity("train-aaaa", settings), "mid_epoch": True, "epoch": 0, "batches_done": 20}
    assert check_same_position(saved, position_identity("train-aaaa", settings)) is None
    changed = position_identity("train-bbbb", {**settings, "max_length": 128})
    with pytest.raises(QAInputError, match=r"stopped mid-epoch \(epoch 0, after 20 batches\).*max_length 192 -> 128"):
        check_same_position(saved, changed, "last.ckpt")
    # The same file name with other bytes (or another tokenizer): the fingerprint differs, the message says so.
    with pytest.raises(QAInputError, match="contents of the training file or of the tokenizer"):
        check_same_position(saved, position_identity("train-cccc", settings))
    with pytest.raises(QAInputError, match="seed 42 -> 1"):
        check_same_position(saved, position_identity("train-aaaa", {**settings, "seed": 1}))
    note = check_same_position({**saved, "mid_epoch": False}, changed)
    assert note.startswith("resuming at an epoch boundary with changed training data (max_length 192 -> 128")


def test_a_moved_run_folder_keeps_its_best_checkpoint_record(tmp_path):
    """The rule: a recorded ``<old dirpath>/NAME`` becomes ``<new dirpath>/NAME``; a file only at the old place is
    carried over; a file at neither place is said."""
    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    old.mkdir(parents=True), new.mkdir(parents=True)
    (new / "epoch0-f13.58.ckpt").write_bytes(b"copied along")  # cp -r took it with the run folder
    (old / "epoch1-f12.07.ckpt").write_bytes(b"only at the old place")
    state = {"dirpath": str(old), "best_model_path": str(old / "epoch0-f13.58.ckpt"), "best_model_score": 3.58,
             "kth_best_model_path": str(old / "epoch1-f12.07.ckpt"), "last_model_path": "",
             "best_k_models": {str(old / "epoch0-f13.58.ckpt"): 3.58, str(old / "gone.ckpt"): 1.0}}
    copied = []
    notes = reroot_record(state, str(new), copy=lambda src, dst: copied.append((src, dst)))
    assert state["dirpath"] == str(new) and state["best_model_score"] == 3.58
    assert state["best_model_path"] == str(new / "epoch0-f13.58.ckpt") and state["last_model_path"] == ""
    assert state["kth_best_model_path"] == str(new / "epoch1-f12.07.ckpt")
    assert copied == [(str(old / "epoch1-f12.07.ckpt"), str(new / "epoch1-f12.07.ckpt"))]
    assert set(state["best_k_models"]) == {str(new / "epoch0-f13.58.ckpt"), str(new / "gone.ckpt")}
    assert len(notes) == 2 and "gone.ckpt, which no longer exists" in notes[1]
    # Other ranks (copy=None) only re-point the paths.
    other = {"dirpath": str(old), "best_model_path": str(old / "epoch1-f12.07.ckpt")}
    assert reroot_record(other, str(new)) == [] and other["best_model_path"] == str(new / "epoch1-f12.07.ckpt")


@pytest.mark.slow
def test_resume_with_ckpt_path_last_continues_from_saved_step(tmp_path):
    first = debug_args(tmp_path, "--trainer.max_steps", 10, "--checkpoint.every_n_train_steps", 5)
    run_cli("fit", *first)
    saved = torch.load(versions(tmp_path)[-1] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 10
    proc = run_cli("fit", *debug_args(tmp_path, "--trainer.max_steps", 20, "--checkpoint.every_n_train_steps", 5,
                                      "--ckpt_path", "last"))
    assert "Restored all states" in proc.stderr + proc.stdout
    resumed = versions(tmp_path)[-1]
    assert resumed.name == "version_0"  # the run goes on in its own folder
    final = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == 20
    # The scheduler continued rather than restarting: its step count is the global step.
    assert final["lr_schedulers"][0]["last_epoch"] == 20
    # One metrics.csv: the first part's rows (steps 4, 9), then the resumed part's, none twice.
    steps = [int(r["step"]) for r in csv.DictReader((resumed / "metrics.csv").open()) if r.get("train/loss_step")]
    assert steps == [4, 9, 14, 19]


@pytest.mark.slow
@pytest.mark.parametrize("kind,command", [("garbage", "fit"), ("empty", "validate"), ("truncated", "predict"),
                                          ("bare_state_dict", "test"), ("no_lightning_version", "validate"),
                                          ("other_project", "fit"), ("missing", "predict")])
def test_broken_checkpoint_is_one_line(debug_run, tmp_path, kind, command):
    good = debug_run[1] / "checkpoints" / "last.ckpt"
    bad = tmp_path / "bad.ckpt" if kind == "missing" else damage(kind, tmp_path / "bad.ckpt", good)
    proc = run_cli(command, *debug_args(tmp_path, "--ckpt_path", bad), check=False, timeout=300)
    expected = CASES.get(kind, "no such checkpoint file (or use 'last' to resume the newest run)")
    assert one_error_line(proc).startswith(f"error: --ckpt_path {bad}: {expected}")


@pytest.mark.slow
def test_last_with_nothing_loadable_is_one_line(tmp_path):
    proc = run_cli("validate", *debug_args(tmp_path, "--ckpt_path", "last"), check=False, timeout=300)
    assert one_error_line(proc).startswith("error: --ckpt_path last: no loadable checkpoint under the run "
                                           "directories (")


@pytest.mark.slow
def test_last_skips_a_damaged_newest_checkpoint(debug_run, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(debug_run[1], root / "lightning_logs" / "version_0")
    newest = root / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    newest.parent.mkdir(parents=True)
    damage("truncated", newest, debug_run[1] / "checkpoints" / "last.ckpt")
    proc = run_cli("validate", *debug_args(root, "--ckpt_path", "last", "--data.cache_dir", debug_run[0] / "cache"))
    assert f"--ckpt_path last: skipped {newest.resolve()}: truncated" in proc.stderr
    good = (root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").resolve()
    assert f"--ckpt_path last: using {good}" in proc.stderr
    assert (versions(root)[-1] / "predictions.json").is_file()


@pytest.mark.slow
def test_command_line_wins_over_checkpoint_and_a_moved_model_folder_is_fine(debug_run, tmp_path):
    tmp, run = debug_run
    moved = tmp_path / "moved-model"
    shutil.copytree(TINY_BERT, moved)  # the checkpoint says tests/fixtures/tiny-bert (relative: gone from cwd)
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"model:\n  model_name_or_path: {moved}\n  n_best: 5\n")  # a config file, not the command line
    cwd, root = tmp_path / "cwd", tmp_path / "out"
    proc = run_elsewhere(cwd, "validate", *abs_args(root, tmp / "cache", "--config", extra,
                                                    "--model.max_answer_length", "1",
                                                    "--ckpt_path", run / "checkpoints" / "last.ckpt", model=None))
    assert "model settings from the checkpoint: n_best=20 (config: 5)" in proc.stderr
    assert f"the checkpoint's model folder tests/fixtures/tiny-bert does not exist; using {moved}" in proc.stderr
    out = versions(root)[-1]
    preds = json.loads((out / "predictions.json").read_text())
    assert len(preds) == 40 and max(len(p.split()) for p in preds.values()) == 1  # 1 token, not the saved 30
    hparams = (out / "hparams.yaml").read_text()
    assert "max_answer_length: 1" in hparams and "n_best: 20" in hparams and str(moved) in hparams


@pytest.mark.slow
def test_another_architecture_is_one_line(debug_run, tmp_path):
    wide = tmp_path / "wide-bert"
    shutil.copytree(TINY_BERT, wide)
    cfg = json.loads((wide / "config.json").read_text())
    cfg["hidden_size"], cfg["intermediate_size"] = 2 * cfg["hidden_size"], 2 * cfg["intermediate_size"]
    (wide / "config.json").write_text(json.dumps(cfg))
    root = tmp_path / "root"
    shutil.copytree(debug_run[1], root / "lightning_logs" / "version_0")
    proc = run_cli("fit", *debug_args(root, "--ckpt_path", "last", "--model.model_name_or_path", wide,
                                      "--data.cache_dir", debug_run[0] / "cache"), check=False)
    line = one_error_line(proc)
    assert line.startswith(f"error: --ckpt_path {(root / 'lightning_logs/version_0/checkpoints/last.ckpt').resolve()}"
                           ": its weights do not fit this run's model (another architecture: model.")
    assert "trained with --model.model_name_or_path tests/fixtures/tiny-bert" in line


@pytest.mark.slow
def test_mid_epoch_resume_with_other_features_is_refused(tmp_path):
    run_cli("fit", *debug_args(tmp_path, "--trainer.max_steps", 10))
    saved = torch.load(versions(tmp_path)[-1] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 10 and saved["SquadDataModule"]["mid_epoch"]
    proc = run_cli("fit", *debug_args(tmp_path, "--trainer.max_steps", 20, "--ckpt_path", "last",
                                      "--data.max_length", 128), check=False)
    line = one_error_line(proc)
    assert "stopped mid-epoch (epoch 0, after 10 batches)" in line and "max_length 192 -> 128" in line
