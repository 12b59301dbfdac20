"""``python -m qa_lightning validate`` and ``predict`` end to end (configs/debug.yaml, the debug run's checkpoint):
DDP equals one process, predict equals validate, partial evaluations, concurrent runs, SQuAD v2 files scored as
the official v2.0 script scores them."""

from __future__ import annotations

import csv
import json

import pytest

from qa_lightning.data.sources import load_split
from conftest import TINY_DEV, abs_args, debug_args, one_error_line, run_cli, run_elsewhere, synthetic_v2, versions
from reference import official_v2_evaluate


@pytest.mark.slow
def test_ddp_validate_equals_single_process(debug_run, tmp_path):
    tmp, run = debug_run
    ckpt = run / "checkpoints" / "last.ckpt"
    outs = {}
    for devices in (1, 2):
        root = tmp_path / f"d{devices}"
        extra = ["--trainer.devices", devices, "--ckpt_path", ckpt, "--data.cache_dir", tmp / "cache"]
        if devices == 2:
            extra += ["--trainer.strategy", "ddp"]
        run_cli("validate", *debug_args(root, *extra))
        out_dir = versions(root)[-1]
        outs[devices] = (json.loads((out_dir / "predictions.json").read_text()),
                         json.loads((out_dir / "eval_results.json").read_text()))
    (p1, r1), (p2, r2) = outs[1], outs[2]
    assert len(p1) == 40 and p1 == p2
    assert r1["exact_match"] == r2["exact_match"] and r1["f1"] == r2["f1"]
    assert r1["examples"] == r2["examples"] == 40


@pytest.mark.slow
def test_predict_equals_validate_for_same_file_and_checkpoint(debug_run, tmp_path):
    tmp, run = debug_run
    ckpt = run / "checkpoints" / "last.ckpt"
    common = ["--ckpt_path", ckpt, "--data.cache_dir", tmp / "cache"]
    run_cli("validate", *debug_args(tmp_path / "v", *common))
    val_dir = versions(tmp_path / "v")[-1]
    # The same questions as a flat JSONL file without answers.
    flat = tmp_path / "questions.jsonl"
    with flat.open("w") as fh:
        for article in json.loads(TINY_DEV.read_text())["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    fh.write(json.dumps({"id": qa["id"], "question": qa["question"], "context": para["context"]}) + "\n")
    for source in (TINY_DEV, flat):
        root = tmp_path / f"p_{source.suffix[1:]}"
        proc = run_cli("predict", *debug_args(root, *common, "--data.predict_file", source))
        pred_dir = versions(root)[-1] / "predict"
        assert f"predict: wrote predictions.json, nbest_predictions.json to {pred_dir}" in proc.stderr  # said where
        preds = json.loads((pred_dir / "predictions.json").read_text())
        assert preds == json.loads((val_dir / "predictions.json").read_text())
        nbest = json.loads((pred_dir / "nbest_predictions.json").read_text())
        assert all(nbest[k][0]["text"] == v for k, v in preds.items() if v)
        assert not (pred_dir / "eval_results.json").exists()  # no answers, no metric


@pytest.mark.slow
def test_no_metrics_file_when_no_example_was_evaluated_completely(debug_run, tmp_path):
    tmp, run = debug_run
    # Windows of 64 tokens: every context spans several (275 windows); one batch of one window leaves every example
    # partial. (A fraction: some jsonargparse versions read "--trainer.limit_val_batches 1" as 1.0, i.e. all.)
    proc = run_cli("validate", *debug_args(tmp_path, "--ckpt_path", run / "checkpoints" / "last.ckpt",
                                           "--data.max_length", 64, "--data.stride", 16, "--data.eval_batch_size", 1,
                                           "--trainer.limit_val_batches", 0.004))
    assert "no example was evaluated completely: no metrics (val/f1 is logged as NaN)" in proc.stderr
    out = versions(tmp_path)[-1]
    assert not (out / "eval_results.json").exists()
    assert json.loads((out / "predictions.json").read_text()) == {}
    rows = [r for r in csv.DictReader((out / "metrics.csv").open()) if r.get("val/f1")]
    assert len(rows) == 1 and rows[0]["val/f1"] == "nan"


@pytest.mark.slow
def test_concurrent_runs_get_distinct_version_folders(debug_run, tmp_path):
    tmp, run = debug_run
    cwd, root = tmp_path / "cwd", tmp_path / "out"
    args = abs_args(root, tmp / "cache", "--ckpt_path", run / "checkpoints" / "last.ckpt")
    procs = [run_elsewhere(cwd, "validate", *args, popen=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    runs = versions(root)
    assert [r.name for r in runs] == ["version_0", "version_1"]
    for r in runs:
        assert (r / "predictions.json").is_file() and (r / "eval_results.json").is_file()
        assert (r / "config.yaml").is_file() and (r / "metrics.csv").is_file()


@pytest.mark.slow
def test_v2_validation_files_match_the_official_v2_script(debug_run, tmp_path):
    tmp, run = debug_run
    data = synthetic_v2(tmp_path / "v2.json")
    run_cli("validate", *debug_args(tmp_path, "--ckpt_path", run / "checkpoints" / "last.ckpt",
                                    "--data.validation_file", tmp_path / "v2.json",
                                    "--data.version_2_with_negative", "true"))
    out = versions(tmp_path)[-1]
    preds = json.loads((out / "predictions.json").read_text())
    odds = json.loads((out / "null_odds.json").read_text())
    ours = json.loads((out / "eval_results.json").read_text())
    official = official_v2_evaluate(data["data"], preds, odds)
    for key in ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_exact", "best_f1",
                "best_exact_thresh", "best_f1_thresh", "HasAns_total", "NoAns_total"):
        assert ours[key] == pytest.approx(official[key], abs=1e-9), key
    assert ours["HasAns_total"] + ours["NoAns_total"] == 40 and ours["NoAns_total"] >= 10
    assert set(odds) == set(preds)
    # The rule: "" exactly when the null score beats the best span by more than the threshold (0.0).
    assert all((preds[k] == "") == (odds[k] > 0.0) for k in preds)


def test_v2_data_without_the_v2_option_is_refused_in_one_line(tmp_path):
    """Empty answer lists are SQuAD v2 "no answer" questions: scored as v1 they would silently count as wrong."""
    data = synthetic_v2(tmp_path / "v2.json")
    empty = sum(not qa["answers"] for art in data["data"] for para in art["paragraphs"] for qa in para["qas"])
    for command, option in (("fit", "--data.train_file"), ("validate", "--data.validation_file")):
        proc = run_cli(command, *debug_args(tmp_path, option, tmp_path / "v2.json"), check=False, timeout=300)
        assert one_error_line(proc) == (
            f"error: {tmp_path / 'v2.json'}: {empty} of 40 questions have an empty answer list (SQuAD v2 unanswerable "
            "questions): pass --data.version_2_with_negative true to train and score them as SQuAD v2 (answer \"\" "
            "when no span beats the null score), or remove them from the file")
    # With the option the same file loads, its report counts them; predict never needs answers.
    _, report = load_split(str(tmp_path / "v2.json"), "train", version_2_with_negative=True)
    assert empty == 16 and report.summary() == f"{tmp_path / 'v2.json'}: 40 examples, 16 unanswerable (empty answer list)"
    load_split(str(tmp_path / "v2.json"), "predict", version_2_with_negative=False)
