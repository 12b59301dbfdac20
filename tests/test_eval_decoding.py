"""decoding.py equals the reference n-best loop on the same logits (random, tied, adversarial, multi-window)."""

from __future__ import annotations

import numpy as np
import pytest

from qa_lightning.evaluation.decoding import decode_answers, decode_nbest, null_scores
from qa_lightning.evaluation.evalset import offsets_array
from reference import reference_decode, reference_validation_features
from conftest import TINY_DEV, squad_examples


@pytest.fixture(scope="module")
def windows(tokenizer):
    """Reference validation features with small windows: most examples span several features."""
    examples = squad_examples(TINY_DEV)
    feats = reference_validation_features(examples, tokenizer, max_length=96, stride=24)
    features = [{"example_id": e, "offset_mapping": o} for e, o in zip(feats["example_id"], feats["offset_mapping"])]
    ex_list = [{"id": i, "context": c} for i, c in zip(examples["id"], examples["context"])]
    index = {e["id"]: k for k, e in enumerate(ex_list)}
    f2e = np.array([index[f["example_id"]] for f in features])
    assert len(features) > 2 * len(ex_list)
    return features, ex_list, f2e


def _ours(start, end, features, ex_list, f2e, **kw):
    offsets = offsets_array([f["offset_mapping"] for f in features])
    texts = decode_answers(start, end, offsets, f2e, [e["context"] for e in ex_list], **kw)
    return {e["id"]: t for e, t in zip(ex_list, texts)}


def _check(start, end, windows, **kw):
    features, ex_list, f2e = windows
    ref = reference_decode(start, end, features, ex_list, **kw)
    ours = _ours(start, end, features, ex_list, f2e, **kw)
    assert ours == ref
    return ours


@pytest.mark.parametrize("seed", range(5))
def test_random_logits(windows, seed):
    rng = np.random.default_rng(seed)
    n, length = len(windows[0]), 96
    start = rng.normal(size=(n, length)).astype(np.float32)
    end = rng.normal(size=(n, length)).astype(np.float32)
    preds = _check(start, end, windows)
    assert sum(bool(p) for p in preds.values()) > 0.9 * len(preds)


@pytest.mark.parametrize("seed", range(5))
def test_tied_logits(windows, seed):
    """Few distinct values: many ties, so the tie order of argsort and of max() both matter."""
    rng = np.random.default_rng(100 + seed)
    n, length = len(windows[0]), 96
    start = rng.integers(0, 3, size=(n, length)).astype(np.float32)
    end = rng.integers(0, 3, size=(n, length)).astype(np.float32)
    _check(start, end, windows)
    _check(np.zeros((n, length), np.float32), np.zeros((n, length), np.float32), windows)


def test_adversarial_logits(windows):
    features, _, _ = windows
    n, length = len(features), 96
    rng = np.random.default_rng(7)
    # Highest logits on question tokens / padding: the top-k holds no context token for many features.
    start = rng.normal(size=(n, length)).astype(np.float32)
    end = rng.normal(size=(n, length)).astype(np.float32)
    for i, f in enumerate(features):
        outside = [k for k, o in enumerate(f["offset_mapping"]) if o is None]
        start[i, outside] += 100
        end[i, outside] += 100
    preds = _check(start, end, windows)
    assert "" in preds.values()  # some examples have no valid span at all
    # End always before start: no valid span anywhere.
    ramp = np.arange(length, dtype=np.float32)
    preds = _check(np.tile(ramp, (n, 1)), np.tile(-ramp, (n, 1)), windows, n_best=3)
    # Long spans only (forces max_answer_length), infinities and huge values.
    start = rng.normal(size=(n, length)).astype(np.float32)
    end = rng.normal(size=(n, length)).astype(np.float32)
    start[:, 20], end[:, 80] = 1e30, 1e30
    start[:, 5] = -np.inf
    _check(start, end, windows, max_answer_length=10)
    _check(start, end, windows, n_best=1)
    _check(start, end, windows, n_best=200, max_answer_length=200)


def test_nbest_first_is_the_answer(windows):
    features, ex_list, f2e = windows
    rng = np.random.default_rng(3)
    start = rng.normal(size=(len(features), 96)).astype(np.float32)
    end = rng.normal(size=(len(features), 96)).astype(np.float32)
    offsets = offsets_array([f["offset_mapping"] for f in features])
    contexts = [e["context"] for e in ex_list]
    answers = decode_answers(start, end, offsets, f2e, contexts)
    nbest = decode_nbest(start, end, offsets, f2e, contexts, n_best=20)
    for a, spans in zip(answers, nbest):
        assert spans and spans[0]["text"] == a
        assert len(spans) <= 20
        scores = [s["score"] for s in spans]
        assert scores == sorted(scores, reverse=True)
        assert sum(s["probability"] for s in spans) == pytest.approx(1.0)


def test_padding_rows_with_minus_inf_do_not_change_answers(windows):
    """Our pipeline pads short rows with -inf: same answers as the unpadded logits."""
    features, ex_list, f2e = windows
    rng = np.random.default_rng(11)
    start = rng.normal(size=(len(features), 96)).astype(np.float32)
    end = rng.normal(size=(len(features), 96)).astype(np.float32)
    pad = np.full((len(features), 40), -np.inf, np.float32)
    a = _ours(start, end, features, ex_list, f2e)
    feats_wide = [{"example_id": f["example_id"], "offset_mapping": f["offset_mapping"] + [None] * 40} for f in features]
    b = _ours(np.hstack([start, pad]), np.hstack([end, pad]), feats_wide, ex_list, f2e)
    assert a == b


def test_null_scores_take_min_over_windows():
    start = np.array([[1.0, 0], [3.0, 0], [0.5, 0]], np.float32)
    end = np.array([[1.0, 0], [0.0, 0], [0.5, 0]], np.float32)
    out = null_scores(start, end, np.zeros(3, int), [0, 0, 1], 2)
    assert out.tolist() == [2.0, 1.0]
