"""metrics.py: the official SQuAD v1.1 / v2.0 definitions (checked against hand values and torchmetrics)."""

from __future__ import annotations

import random

import pytest

from qa_lightning.evaluation.metrics import f1_score, normalize_answer, squad_v1, squad_v2


def test_normalisation():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theatre") == "theatre"  # articles only as whole words


def test_v1_hand_values():
    refs = {"a": ["Denver Broncos", "The Broncos"], "b": ["Santa Clara, California"], "c": ["x"]}
    preds = {"a": "the broncos", "b": "Santa Clara", "c": "y"}
    out = squad_v1(preds, refs)
    assert out["exact_match"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(100 * (1 + 2 * (1 * 2 / 3) / (1 + 2 / 3) + 0) / 3)
    assert f1_score("", "x") == 0.0


def test_v1_matches_torchmetrics_on_random_strings():
    """torchmetrics' SQuAD agrees with v1.1 except when both sides normalise to nothing (it uses v2's rule there),
    so such strings are left out here; the official script itself is compared in test_v1_matches_official_script."""
    from torchmetrics.functional.text import squad as tm_squad

    rng = random.Random(0)
    words = ["the", "a", "Denver", "broncos", "1858", "Saint", "Bernadette,", "x", "an", "Soubirous."]
    preds, refs = {}, {}
    for i in range(300):
        qid = f"q{i}"
        refs[qid] = [" ".join(rng.choices(words, k=rng.randint(1, 5))) for _ in range(rng.randint(1, 3))]
        preds[qid] = " ".join(rng.choices(words, k=rng.randint(1, 5)))
        if not normalize_answer(preds[qid]) or not all(normalize_answer(r) for r in refs[qid]):
            del preds[qid], refs[qid]
    ours = squad_v1(preds, refs)
    theirs = tm_squad([{"prediction_text": p, "id": k} for k, p in preds.items()],
                      [{"answers": {"text": refs[k], "answer_start": [0] * len(refs[k])}, "id": k} for k in refs])
    assert ours["exact_match"] == pytest.approx(float(theirs["exact_match"]), abs=1e-4)
    assert ours["f1"] == pytest.approx(float(theirs["f1"]), abs=1e-4)


def test_v2_breakdown_and_best_threshold():
    refs = {"h1": ["Paris"], "h2": ["blue sky"], "n1": [], "n2": [""]}
    preds = {"h1": "Paris", "h2": "", "n1": "", "n2": "something"}
    probs = {"h1": 0.1, "h2": 0.9, "n1": 0.8, "n2": 0.7}
    out = squad_v2(preds, refs, na_probs=probs)
    assert out["HasAns_total"] == 2 and out["NoAns_total"] == 2
    assert out["exact"] == pytest.approx(50.0)  # h1 right, h2 wrong, n1 right, n2 wrong
    assert out["HasAns_exact"] == pytest.approx(50.0)
    assert out["NoAns_exact"] == pytest.approx(50.0)
    # Sweeping thresholds: answering only h1 (thresh 0.1) makes n2 "no answer" -> 3/4 right.
    assert out["best_exact"] == pytest.approx(75.0)
    assert out["best_exact_thresh"] == pytest.approx(0.1)


def test_v1_matches_official_script():
    from reference import official_v1_evaluate

    rng = random.Random(1)
    words = ["the", "a", "Denver", "broncos", "1858", "Saint", "Bernadette,", "x", "an", "Soubirous."]
    data = [{"paragraphs": [{"context": "", "qas": []}]}]
    preds, refs = {}, {}
    for i in range(400):
        golds = [" ".join(rng.choices(words, k=rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        data[0]["paragraphs"][0]["qas"].append({"id": f"q{i}", "answers": [{"text": g} for g in golds]})
        refs[f"q{i}"] = golds
        if i % 7:  # some predictions missing: they count as wrong
            preds[f"q{i}"] = " ".join(rng.choices(words, k=rng.randint(0, 4)))
    assert squad_v1(preds, refs) == pytest.approx(official_v1_evaluate(data, preds))


def _evaluate_or_skip(version_2: bool):
    from qa_lightning.errors import QAInputError
    from qa_lightning.evaluation.metrics import evaluate_metric

    try:
        return evaluate_metric(version_2)
    except QAInputError as err:
        pytest.skip(f"evaluate's hub metric cannot be loaded here (offline): {err}")


def test_evaluate_metric_equals_builtin_v1():
    fn = _evaluate_or_skip(False)
    refs = {"a": ["Denver Broncos", "The Broncos"], "b": ["Santa Clara, California"], "c": ["x"]}
    preds = {"a": "the broncos", "b": "Santa Clara", "c": "y"}
    ours, theirs = squad_v1(preds, refs), fn(preds, refs)
    assert theirs["exact_match"] == pytest.approx(ours["exact_match"])
    assert theirs["f1"] == pytest.approx(ours["f1"])


def test_evaluate_metric_equals_builtin_v2():
    fn = _evaluate_or_skip(True)
    refs = {"h1": ["Paris"], "h2": ["blue sky"], "n1": []}
    preds = {"h1": "Paris", "h2": "sky", "n1": ""}
    ours = squad_v2(preds, refs, na_prob_thresh=float("inf"))
    theirs = fn(preds, refs)
    assert theirs["exact"] == pytest.approx(ours["exact"]) and theirs["f1"] == pytest.approx(ours["f1"])


def test_evaluate_metric_offline_is_one_clear_error(monkeypatch):
    """Offline (as here and in CI), asking for the hub metric fails at start-up with a message saying what to do."""
    from qa_lightning.errors import QAInputError
    from qa_lightning.evaluation.metrics import evaluate_metric

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    try:
        evaluate_metric(False)
    except QAInputError as err:
        assert "--model.metric builtin" in str(err) and "\n" not in str(err)
    else:
        pytest.skip("the metric is in the local evaluate cache: nothing to refuse")
