"""SQuAD v2: unanswerable questions train to CLS; null-score decoding; metrics equal the official v2.0 script."""

from __future__ import annotations

import json

import pytest

from qa_lightning.data.features import prepare_train_features
from qa_lightning.data.sources import load_split
from reference import official_v2_evaluate
from conftest import debug_args, run_cli, synthetic_v2, versions


def test_unanswerable_questions_are_labelled_cls(tokenizer, tmp_path):
    data = synthetic_v2(tmp_path / "v2.json")
    cols = {True: {"question": [], "context": [], "answers": []}, False: {"question": [], "context": [], "answers": []}}
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                side = cols[bool(qa["answers"])]
                side["question"].append(qa["question"])
                side["context"].append(para["context"])
                side["answers"].append({"text": [x["text"] for x in qa["answers"]],
                                        "answer_start": [x["answer_start"] for x in qa["answers"]]})
    assert len(cols[False]["question"]) >= 10
    impossible = prepare_train_features(cols[False], tokenizer, 128, 32)
    assert set(impossible["start_positions"]) == {0} and set(impossible["end_positions"]) == {0}  # CLS of BERT
    possible = prepare_train_features(cols[True], tokenizer, 128, 32)
    assert sum(s > 0 for s in possible["start_positions"]) >= 20


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
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1] == (
            f"error: {tmp_path / 'v2.json'}: {empty} of 40 questions have an empty answer list (SQuAD v2 unanswerable "
            "questions): pass --data.version_2_with_negative true to train and score them as SQuAD v2 (answer \"\" "
            "when no span beats the null score), or remove them from the file")
    # With the option the same file loads, its report counts them; predict never needs answers.
    _, report = load_split(str(tmp_path / "v2.json"), "train", version_2_with_negative=True)
    assert empty == 16 and report.summary() == f"{tmp_path / 'v2.json'}: 40 examples, 16 unanswerable (empty answer list)"
    load_split(str(tmp_path / "v2.json"), "predict", version_2_with_negative=False)
