"""checkpoints.py + the CLI: outputs under --trainer.default_root_dir from any working directory, last.ckpt always
the newest state, damaged or foreign checkpoints refused in one line, the settings policy, concurrent version
folders."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from qa_lightning.checkpoints import reroot_record
from conftest import TINY_BERT, abs_args, debug_args, one_error_line, run_cli, run_elsewhere, versions
from test_resume import CASES, damage

def test_a_failed_run_leaves_no_empty_version_folder(tmp_path):
    proc = run_elsewhere(tmp_path / "cwd", "fit", *abs_args(tmp_path / "out", tmp_path / "cache",
                                                           "--data.validation_file", tmp_path / "nope.json"),
                         check=False)
    assert one_error_line(proc).endswith("nope.json: no such file")
    assert list((tmp_path / "out" / "lightning_logs").iterdir()) == []


@pytest.mark.slow
def test_everything_under_root_dir_and_last_is_the_final_state(tmp_path):
    cwd, root = tmp_path / "cwd", tmp_path / "out"
    # lr so tiny that val/f1 cannot improve in epoch 1: Lightning's save_last would leave step 33 as "last".
    proc = run_elsewhere(cwd, "fit", *abs_args(root, tmp_path / "cache", "--model.learning_rate", "1e-12",
                                               "--crash_safety.every_n_train_steps", "10", "--ckpt_path", "last"))
    assert "--ckpt_path last: no checkpoint of an earlier run found; starting from scratch" in proc.stderr
    assert list(cwd.iterdir()) == []  # nothing in the working directory
    run = root / "lightning_logs" / "version_0"
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names[0].startswith("epoch0-") and names[1:] == ["last.ckpt"]  # best stayed epoch 0; no last-v1
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 66 and last["epoch"] == 1  # the end state of the run
    for name in ("predictions.json", "eval_results.json", "metrics.csv", "config.yaml", "learning_curves.png",
                 "export/config.json"):
        assert (run / name).is_file(), name
    # validate --ckpt_path last from the same other directory finds it under the root dir
    proc = run_elsewhere(cwd, "validate", *abs_args(root, tmp_path / "cache", "--ckpt_path", "last"))
    assert f"--ckpt_path last: using {(run / 'checkpoints' / 'last.ckpt').resolve()}" in proc.stderr
    assert (root / "lightning_logs" / "version_1" / "predictions.json").is_file() and list(cwd.iterdir()) == []


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
