"""resume.py: a damaged or foreign checkpoint is one sentence; 'last' takes the newest loadable file; mid-epoch
positions are refused on other batches."""

from __future__ import annotations

import os
import time

import pytest
import torch

from qa_lightning.errors import QAInputError
from qa_lightning.resume import (UnusableCheckpoint, check_same_position, find_last_checkpoint, position_identity,
                                 read_checkpoint)


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
