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
    refs = {"h1": ["Paris"], "h2": ["blue sky"], "n1": [], "n2": []}
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


def v2_dataset(rng, n=300):
    """Random v2 questions: answerable (some golds normalising to "", e.g. "The"), unanswerable (no answers)."""
    words = ["Paris", "blue", "sky", "the", "a", "1858", "Saint", "x"]
    data = [{"paragraphs": [{"context": "", "qas": []}]}]
    refs, preds, odds = {}, {}, {}
    for i in range(n):
        kind = i % 5
        golds = [] if kind == 0 else ["The"] if kind == 1 else [")", "a"] if kind == 2 else \
            [" ".join(rng.choices(words, k=rng.randint(1, 3))) for _ in range(rng.randint(1, 3))]
        qid = f"q{i}"
        data[0]["paragraphs"][0]["qas"].append({"id": qid, "answers": [{"text": g} for g in golds]})
        refs[qid] = golds
        odds[qid] = rng.uniform(-3.0, 3.0)
        # Our null rule at threshold 0.0: "" exactly when the odds are above it.
        preds[qid] = "" if odds[qid] > 0.0 else " ".join(rng.choices(words, k=rng.randint(1, 3)))
    return data, refs, preds, odds


KEYS = ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total")


def test_v2_has_ans_is_the_official_any_answer_rule():
    from reference import official_v2_evaluate

    data, refs, preds, odds = v2_dataset(random.Random(3))
    ours = squad_v2(preds, refs, na_probs=odds, na_prob_thresh=float("inf"))  # what postprocess computes
    official = official_v2_evaluate(data, preds)  # evaluate-v2.0.py data.json predictions.json
    assert ours["HasAns_total"] == 240 and ours["NoAns_total"] == 60  # "The" and ")" questions are HasAns
    for key in KEYS:
        assert ours[key] == pytest.approx(official[key], abs=1e-9), key
    with_odds = official_v2_evaluate(data, preds, odds)  # --na-prob-file null_odds.json
    for key in ("best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"):
        assert ours[key] == pytest.approx(with_odds[key], abs=1e-9), key


def test_v2_na_prob_thresh_note():
    """The README's note: with --na-prob-file, the script's exact/f1 equal ours when --na-prob-thresh is at least our
    threshold (0.0) and no answerable question's answers all normalise to ""; a lower one differs."""
    from reference import official_v2_evaluate

    data, refs, preds, odds = v2_dataset(random.Random(4))
    ours = squad_v2(preds, refs, na_probs=odds, na_prob_thresh=float("inf"))
    normal = [q for q in refs if refs[q] and all(normalize_answer(g) for g in refs[q]) or not refs[q]]
    sub = {q: refs[q] for q in normal}
    sub_data = [{"paragraphs": [{"context": "", "qas": [qa for qa in data[0]["paragraphs"][0]["qas"]
                                                        if qa["id"] in sub]}]}]
    sub_preds, sub_odds = {q: preds[q] for q in sub}, {q: odds[q] for q in sub}
    ours_sub = squad_v2(sub_preds, sub, na_probs=sub_odds, na_prob_thresh=float("inf"))
    for thresh in (0.0, 1.0, 2.5):
        official = official_v2_evaluate(sub_data, sub_preds, sub_odds, na_prob_thresh=thresh)
        for key in KEYS:
            assert ours_sub[key] == pytest.approx(official[key], abs=1e-9), (thresh, key)
    lower = official_v2_evaluate(sub_data, sub_preds, sub_odds, na_prob_thresh=-1.0)
    assert lower["exact"] != pytest.approx(ours_sub["exact"])
    # Answerable questions whose answers all normalise to "" (here "The", ")"/"a"), answered "" with odds above the
    # script's threshold: the script re-scores them as wrong, the prediction itself matches.
    official = official_v2_evaluate(data, preds, odds)
    assert official["HasAns_exact"] < ours["HasAns_exact"]
