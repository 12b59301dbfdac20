"""SQuAD exact match / F1 as the official evaluation scripts define them (pure Python; offline).

    squad_v1({"id1": "Denver Broncos"}, {"id1": ["Denver Broncos", "The Broncos"]})
    # -> {"exact_match": 100.0, "f1": 100.0}

``squad_v1`` follows evaluate-v1.1.py, ``squad_v2`` evaluate-v2.0.py (HasAns_/NoAns_ breakdowns, the best null
threshold over ``na_probs``); ``evaluate_metric`` is the opt-in hub metric (``evaluate.load``, needs the network).
"""

from __future__ import annotations

import collections
import re
import string
from typing import Mapping, Sequence

from ..errors import QAInputError

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_NO_PUNCT = str.maketrans("", "", string.punctuation)  # same characters as the script's set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (the official normalisation)."""
    s = s.lower().translate(_NO_PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def _overlap_f1(pred: collections.Counter, n_pred: int, gold: collections.Counter, n_gold: int) -> float:
    """Token F1 of two bags of normalised tokens (the one place it is computed)."""
    same = sum(min(c, gold[t]) for t, c in pred.items() if t in gold)
    if same == 0:
        return 0.0
    precision, recall = same / n_pred, same / n_gold
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, ground_truth: str, v2: bool = False) -> float:
    """Token F1 (v1.1 script); with ``v2`` an empty prediction for an empty gold counts as a match (v2.0 script)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    if not pred_tokens or not gold_tokens:
        return float(v2 and pred_tokens == gold_tokens)
    return _overlap_f1(collections.Counter(pred_tokens), len(pred_tokens), collections.Counter(gold_tokens),
                       len(gold_tokens))


class SquadV1Scorer:
    """``SquadV1Scorer(references)(predictions)`` equals ``squad_v1(predictions, references)``, with the gold side
    prepared once (normalised, de-duplicated, token counts): build it once per split, call it at every validation."""

    def __init__(self, references: Mapping[str, Sequence[str]]):
        self.golds = {}
        for qid, texts in references.items():
            norms = list(dict.fromkeys(normalize_answer(t) for t in texts))  # unique, in order
            self.golds[qid] = (set(norms), [(collections.Counter(n.split()), len(n.split())) for n in norms])

    def __call__(self, predictions: Mapping[str, str]) -> dict:
        if not self.golds:
            return {"exact_match": 0.0, "f1": 0.0}
        em = f1 = 0.0
        for qid, (exact, counted) in self.golds.items():
            pred = predictions.get(qid)
            if pred is None:  # missing prediction: 0, as the script does
                continue
            norm = normalize_answer(pred)
            if norm in exact:
                em += 1.0
                f1 += 1.0 if norm else 0.0  # v1.1: an empty gold never scores F1
                continue
            tokens = norm.split()
            if not tokens:
                continue
            mine = collections.Counter(tokens)
            f1 += max((_overlap_f1(mine, len(tokens), gold, n_gold) for gold, n_gold in counted if n_gold),
                      default=0.0)
        n = len(self.golds)
        return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


def squad_v1(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict:
    """EM and F1 (percent) of ``predictions`` ({id: text}) over every id in ``references`` ({id: [gold texts]}); a
    missing prediction scores 0, as the script does."""
    return SquadV1Scorer(references)(predictions)


def _best_threshold(scores: dict, na_probs: Mapping[str, float], has_ans: dict) -> tuple[float, float]:
    """evaluate-v2.0.py's find_best_thresh: sweep the null threshold over the sorted na_probs."""
    num_no_ans = sum(1 for k in has_ans if not has_ans[k])
    cur = best = float(num_no_ans)
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            diff = scores[qid]["pred_score"]
        else:
            diff = -1.0 if scores[qid]["pred_nonempty"] else 0.0
        cur += diff
        if cur > best:
            best, best_thresh = cur, na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


def squad_v2(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]],
             na_probs: Mapping[str, float] | None = None, na_prob_thresh: float = 1.0) -> dict:
    """The v2.0 evaluation: exact/f1, HasAns_*/NoAns_* and, with ``na_probs``, best_exact/best_f1 and thresholds.

    Args:
        predictions: ``{id: text}``, "" meaning "no answer".
        references: ``{id: [gold texts]}``; an empty list marks an unanswerable question. As in the official
            script, a non-empty list is HasAns even when every text normalises to "" (e.g. "The"); such a question
            is scored against "" (only an empty prediction matches).
        na_probs: ``{id: null score}`` (higher = more likely unanswerable), e.g. our ``null_odds.json``.
        na_prob_thresh: predictions with ``na_probs > thresh`` count as "no answer" (1.0: the script's default).
    """
    na_probs = dict(na_probs) if na_probs is not None else {k: 0.0 for k in references}
    has_ans = {k: bool(golds) for k, golds in references.items()}  # the script's bool(qa["answers"])
    raw = {}
    for qid, golds in references.items():
        golds = [g for g in golds if normalize_answer(g)] or [""]
        pred = predictions.get(qid, "")
        raw[qid] = (max(exact_match_score(pred, g) for g in golds), max(f1_score(pred, g, v2=True) for g in golds))

    def thresholded(i: int) -> dict:
        out = {}
        for qid, sc in raw.items():
            if na_probs.get(qid, 0.0) > na_prob_thresh:
                out[qid] = float(not has_ans[qid])
            else:
                out[qid] = sc[i]
        return out

    em, f1 = thresholded(0), thresholded(1)
    n = len(references)
    result = {"exact": 100.0 * sum(em.values()) / n if n else 0.0,
              "f1": 100.0 * sum(f1.values()) / n if n else 0.0, "total": n}
    for name, flag in (("HasAns", True), ("NoAns", False)):
        ids = [k for k in references if has_ans[k] == flag]
        if ids:
            result[f"{name}_exact"] = 100.0 * sum(em[k] for k in ids) / len(ids)
            result[f"{name}_f1"] = 100.0 * sum(f1[k] for k in ids) / len(ids)
            result[f"{name}_total"] = len(ids)
    for name, table, idx in (("exact", em, 0), ("f1", f1, 1)):
        scores = {k: {"pred_score": raw[k][idx], "pred_nonempty": bool(predictions.get(k, ""))} for k in references}
        best, thresh = _best_threshold(scores, na_probs, has_ans)
        result[f"best_{name}"] = best
        result[f"best_{name}_thresh"] = thresh
    return result


def evaluate_metric(version_2: bool = False):
    """The course's call, ``evaluate.load("squad")`` (``"squad_v2"``), as ``fn(predictions, references)``: opt-in
    (``--model.metric evaluate``); it downloads the metric script, so offline it raises :class:`QAInputError` here,
    before any training. v2: predictions already answer "" past the null threshold: ``no_answer_probability`` 0."""
    name = "squad_v2" if version_2 else "squad"
    try:
        import evaluate

        metric = evaluate.load(name)
    except Exception as err:  # ImportError, offline FileNotFoundError/ConnectionError, ...
        raise QAInputError(
            f"--model.metric evaluate: could not load evaluate's '{name}' metric ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:120] if str(err) else 'no detail'}); it needs the Hugging Face hub (or its "
            "cache) and `pip install evaluate`; --model.metric builtin computes the same definitions offline") from None

    def compute(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict:
        preds = [{"id": k, "prediction_text": predictions.get(k, "")} for k in references]
        if version_2:
            for p in preds:
                p["no_answer_probability"] = 0.0
        refs = [{"id": k, "answers": {"text": list(v), "answer_start": [0] * len(v)}} for k, v in references.items()]
        out = {k: float(v) for k, v in metric.compute(predictions=preds, references=refs).items()}
        return {**out, "exact_match": out.get("exact_match", out.get("exact", 0.0))}

    return compute
