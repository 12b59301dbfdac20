"""evaluation/postprocess.py: logits + EvalSet -> the recipe's answers and the official metrics; files; partial runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TINY_DEV, squad_examples
from qa_lightning.evaluation.evalset import EvalSet, offsets_array
from qa_lightning.evaluation.postprocess import DecodeSettings, PostProcessor, write_outputs
from reference import official_v1_evaluate, reference_decode, reference_validation_features

WIDTH = 96


@pytest.fixture(scope="module")
def split(tokenizer):
    """Reference features of the tiny dev set with small windows (many examples span several features)."""
    examples = squad_examples(TINY_DEV)
    feats = reference_validation_features(examples, tokenizer, max_length=WIDTH, stride=24)
    index = {k: i for i, k in enumerate(examples["id"])}
    ev = EvalSet(example_ids=list(examples["id"]), contexts=list(examples["context"]),
                 answers=[a["text"] for a in examples["answers"]],
                 feature_to_example=np.array([index[e] for e in feats["example_id"]]),
                 offsets=offsets_array(feats["offset_mapping"]), cls_index=np.zeros(len(feats["input_ids"]), int),
                 width=WIDTH)
    features = [{"example_id": e, "offset_mapping": o} for e, o in zip(feats["example_id"], feats["offset_mapping"])]
    data = json.loads(TINY_DEV.read_text())["data"]
    return ev, features, data


def _logits(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, WIDTH)).astype(np.float32), rng.normal(size=(n, WIDTH)).astype(np.float32)


def test_predictions_and_metrics_equal_the_recipe(split):
    ev, features, data = split
    start, end = _logits(len(features), 0)
    result = PostProcessor(DecodeSettings(n_best=20, max_answer_length=30))(start, end, np.ones(len(features), bool), ev)
    ref = reference_decode(start, end, features, [{"id": i, "context": c} for i, c in zip(ev.example_ids, ev.contexts)])
    assert result.predictions == ref
    assert result.metrics == pytest.approx(official_v1_evaluate(data, ref))
    assert result.examples == len(ev.example_ids) and result.partial == 0
    assert [spans[0]["text"] for spans in result.nbest.values()] == list(ref.values())


def test_partly_evaluated_examples_are_left_out_and_said(split, caplog):
    ev, features, _ = split
    start, end = _logits(len(features), 1)
    seen = np.ones(len(features), bool)
    seen[-3:] = False  # the last example(s) lose features
    result = PostProcessor()(start, end, seen, ev)
    missing = set(ev.feature_to_example[-3:].tolist())
    assert result.partial == len(missing) and result.examples == len(ev.example_ids) - len(missing)
    assert not {ev.example_ids[i] for i in missing} & set(result.predictions)
    assert "only partly evaluated" in caplog.text


def test_nothing_complete_writes_no_metrics_file(split, tmp_path):
    ev, features, _ = split
    start, end = _logits(len(features), 2)
    result = PostProcessor()(start, end, np.zeros(len(features), bool), ev)
    assert result.metrics == {} and result.examples == 0
    written = write_outputs(str(tmp_path), result, {"epoch": 0})
    assert "eval_results.json" not in written and not (tmp_path / "eval_results.json").exists()
    assert json.loads((tmp_path / "predictions.json").read_text()) == {}


def test_v2_null_rule_and_odds(split):
    ev, features, _ = split
    start, end = _logits(len(features), 3)
    start[:, 0] += 3.0  # CLS strongly preferred in every window
    end[:, 0] += 3.0
    settings = DecodeSettings(version_2_with_negative=True, null_score_diff_threshold=0.0)
    result = PostProcessor(settings)(start, end, np.ones(len(features), bool), ev)
    odds = result.null_odds
    assert set(odds) == set(result.predictions)
    for qid, text in result.predictions.items():
        assert (text == "") == (odds[qid] > 0.0)
    assert {"exact", "f1", "HasAns_total", "best_f1", "exact_match"} <= set(result.metrics)
    # A threshold above every odd answers everything.
    high = PostProcessor(DecodeSettings(version_2_with_negative=True, null_score_diff_threshold=1e9))
    assert all(high(start, end, np.ones(len(features), bool), ev).predictions.values())


def test_custom_metric_fn_replaces_the_builtin(split):
    ev, features, _ = split
    start, end = _logits(len(features), 4)
    calls = []

    def metric(preds, refs):
        calls.append((len(preds), len(refs)))
        return {"exact_match": 1.0, "f1": 2.0}

    result = PostProcessor(metric_fn=metric)(start, end, np.ones(len(features), bool), ev)
    assert result.metrics == {"exact_match": 1.0, "f1": 2.0} and calls == [(len(ev.example_ids),) * 2]
