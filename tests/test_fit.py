"""``python -m qa_lightning fit`` end to end (configs/debug.yaml): what a run writes (checkpoints, predictions, metrics
equal to the official script's, metrics.csv, curves, export) and where (under --trainer.default_root_dir, from any
working directory), the recipe as the default, the built-in callbacks with logger/checkpointing off, fast_dev_run,
the seed of the batch order, the GPU-speed options on the command line, and bad input as one ``error:`` line.

Other entry points: test_validate_predict.py, test_resume.py (and test_resume_interrupted.py), test_ask.py,
test_export.py, test_demo.py; every architecture through fit/validate/ask: test_architectures.py."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
import torch

from conftest import (ROOT, TINY_DEV, abs_args, debug_args, one_error_line, run_cli, run_elsewhere,
                      unpadded_supported, versions)
from reference import official_v1_evaluate


@pytest.mark.slow
def test_debug_fit_writes_checkpoint_predictions_and_official_metrics(debug_run):
    _, run = debug_run
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and len(ckpts) == 2  # best by val/f1 + last
    preds = json.loads((run / "predictions.json").read_text())
    results = json.loads((run / "eval_results.json").read_text())
    data = json.loads(TINY_DEV.read_text())["data"]
    official = official_v1_evaluate(data, preds)
    assert len(preds) == 40
    assert results["exact_match"] == pytest.approx(official["exact_match"], abs=1e-9)
    assert results["f1"] == pytest.approx(official["f1"], abs=1e-9)
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (results["epoch"], results["step"]) == (last["epoch"], last["global_step"])  # the final validation's
    nbest = json.loads((run / "nbest_predictions.json").read_text())
    assert set(nbest) == set(preds)
    # One validation row per epoch: the sanity check logged nothing.
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    val_rows = [r for r in rows if r.get("val/f1")]
    assert len(val_rows) == 2
    assert any(r.get("train/loss_step") for r in rows)
    assert (run / "learning_curves.png").stat().st_size > 10_000
    assert (run / "export" / "config.json").is_file() and (run / "export" / "tokenizer.json").is_file()


def test_print_config_shows_recipe_and_links():
    out = run_cli("fit", "--print_config").stdout
    assert "model_name_or_path: bert-base-cased" in out
    assert "learning_rate: 2.0e-05" in out and "max_length: 384" in out and "stride: 128" in out
    assert "monitor: val/f1" in out and "max_epochs: 3" in out


def test_offline_default_recipe_fails_with_one_clear_line():
    line = one_error_line(run_cli("fit", check=False, timeout=300))
    assert "--model.model_name_or_path" in line and "local" in line


def test_offline_hub_dataset_points_to_local_files(tmp_path):
    proc = run_cli("fit", "--model.model_name_or_path", "tests/fixtures/tiny-bert", "--model.pretrained", "false",
                   "--data.cache_dir", tmp_path, "--trainer.default_root_dir", tmp_path,
                   "--trainer.logger.init_args.save_dir", tmp_path, check=False, timeout=300)
    last = one_error_line(proc)
    assert "'squad'" in last and "--data.train_file" in last and "--data.validation_file" in last


@pytest.mark.parametrize("args,needle", [
    (["--data.validation_file", "nope.json"], "nope.json: no such file"),
    (["--data.stride", "192"], "stride"),
])
def test_cli_bad_input_one_line(tmp_path, args, needle):
    assert needle in one_error_line(run_cli("fit", *debug_args(tmp_path, *args), check=False, timeout=300))


@pytest.mark.slow
def test_logger_false_and_checkpointing_false_adapt_the_built_in_callbacks(tmp_path):
    no_log = tmp_path / "no_logger"
    proc = run_cli("fit", "--config", "configs/debug.yaml", "--trainer.default_root_dir", no_log,
                   "--data.cache_dir", tmp_path / "cache", "--trainer.enable_progress_bar", "false",
                   "--trainer.logger", "false")
    assert proc.stderr.count("--trainer.logger false: no metrics.csv, learning-rate monitor or learning curves; "
                             f"predictions, eval_results.json, checkpoints/ and export/ go directly into {no_log}") == 1
    assert {p.name for p in no_log.iterdir()} >= {"predictions.json", "eval_results.json", "checkpoints", "export"}
    assert not list(no_log.rglob("metrics.csv")) and not (no_log / "lightning_logs").exists()
    assert (no_log / "checkpoints" / "last.ckpt").is_file() and (no_log / "export" / "model.safetensors").is_file()

    no_ckpt = tmp_path / "no_checkpoints"
    proc = run_cli("fit", *debug_args(no_ckpt, "--trainer.enable_checkpointing", "false"))
    assert proc.stderr.count("--trainer.enable_checkpointing false: no checkpoints (no best by val/f1, no last.ckpt; "
                             "Ctrl-C and SIGTERM stop without saving); the export holds the final weights") == 1
    assert not list(no_ckpt.rglob("*.ckpt")) and not list(no_ckpt.rglob("checkpoints"))
    run = versions(no_ckpt)[-1]
    assert "Exported final model to" in proc.stdout
    for name in ("predictions.json", "eval_results.json", "metrics.csv", "export/model.safetensors"):
        assert (run / name).is_file(), name


@pytest.mark.slow
def test_fast_dev_run_writes_no_checkpoint_and_no_export(tmp_path):
    proc = run_cli("fit", *debug_args(tmp_path, "--trainer.fast_dev_run", "true"))
    assert "fast_dev_run: no export (as Lightning writes no checkpoints in this mode)" in proc.stderr
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("export"))


@pytest.mark.slow
@pytest.mark.parametrize("extra,seed", [([], 7), (["--data.seed", "3"], 3)])
def test_seed_everything_also_sets_the_batch_order_unless_data_seed_is_given(tmp_path, extra, seed):
    run_cli("fit", *debug_args(tmp_path, "--seed_everything", "7", "--trainer.max_steps", "2",
                               "--trainer.limit_val_batches", "0", *extra))
    saved = torch.load(versions(tmp_path)[-1] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["SquadDataModule"]["order"] == [8, seed, True]  # batch size, seed of the order, length grouping


@pytest.mark.skipif(any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")),
                    reason="TensorBoard is installed here")
def test_tensorboard_logger_without_tensorboard_is_one_line(tmp_path):
    proc = run_cli("fit", *debug_args(tmp_path, "--trainer.logger", "TensorBoardLogger"), check=False, timeout=300)
    assert one_error_line(proc) == (
        "error: --trainer.logger TensorBoardLogger: TensorBoard is not installed; install it with "
        "pip install 'qa_lightning[tensorboard]' (or pip install tensorboard)")
    assert '\ntensorboard = ["tensorboard>=2.9"]\n' in (ROOT / "pyproject.toml").read_text()  # the extra it names


def test_a_missing_relative_model_folder_is_named_as_a_folder(tmp_path):
    """configs/debug.yaml names tests/fixtures/tiny-bert, relative to the repository: run from elsewhere."""
    proc = run_elsewhere(tmp_path, "fit", *abs_args(tmp_path / "out", tmp_path / "cache", model=None), check=False,
                         timeout=300)
    assert one_error_line(proc) == (
        f"error: --model.model_name_or_path tests/fixtures/tiny-bert: no such model folder (a relative path is taken "
        f"from the working directory {tmp_path}); point it at an existing directory with config.json, weights and a "
        "fast tokenizer")


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
def test_unpadded_and_length_bucket_options_on_the_command_line(tmp_path):
    args = debug_args(tmp_path, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "2",
                      "--data.length_buckets", "[64,128,192]", "--model.unpadded", "true")
    proc = run_cli("fit", *args, check=False)
    if unpadded_supported():
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: --model.unpadded")
    bad = run_cli("fit", *debug_args(tmp_path, "--data.length_buckets", "[64,128]"), check=False)
    assert one_error_line(bad).startswith("error: --data.length_buckets: largest bucket 128 < max_length 192")
