"""Start/end logits -> answer spans (pure numpy; no Lightning, no I/O).

    texts = decode_answers(start_logits, end_logits, offsets, feature_to_example, contexts)

The rule is the reference recipe's n-best loop, vectorised over all features at once: per feature take the
``n_best`` highest start and end logits (same ``np.argsort`` order, so ties break the same way), keep pairs whose
tokens are both inside the context with ``0 <= end - start < max_answer_length``, score ``start + end`` logit, and
per example keep the first best pair in (feature, start rank, end rank) order -- exactly what ``max()`` over the
reference's candidate list returns. An example without any valid pair gets "".
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _floats(x) -> np.ndarray:
    """Keep float32/float64 as given (the reference adds numpy scalars of the input's dtype); others -> float32."""
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def topk_desc(x: np.ndarray, k: int) -> np.ndarray:
    """``np.argsort(x, axis=1)[:, ::-1][:, :k]`` -- the reference's n-best indices, ties included -- but fast.

    A partial sort finds the k+1 largest values of each row; when they are pairwise distinct the descending order
    is unique, so it equals the reference's. Rows with a tie among them (or NaN) take the full argsort, so the
    tie order is exactly numpy's.
    """
    n, length = x.shape
    if k >= length:
        return np.argsort(x, axis=1)[:, ::-1][:, :k]
    part = np.argpartition(-x, k, axis=1)[:, :k + 1]  # (F, k+1) the k+1 largest, unordered
    vals = np.take_along_axis(x, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    tied = (vals[:, :-1] == vals[:, 1:]).any(axis=1) | np.isnan(vals).any(axis=1)
    out = part[:, :k].copy()
    if tied.any():
        out[tied] = np.argsort(x[tied], axis=1)[:, ::-1][:, :k]
    return out


def topk_candidates(start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray, n_best: int = 20,
                    max_answer_length: int = 30):
    """All (start, end) candidate pairs of each feature, in the reference's enumeration order.

    Returns ``(start_idx, end_idx, scores, valid)``: ``start_idx``/``end_idx`` (F, K*K) token indices, ``scores``
    (F, K*K) float32 logit sums, ``valid`` (F, K*K) bool -- candidate ``k = i * K + j`` pairs the i-th best start
    with the j-th best end (K = min(n_best, L)).
    """
    start_logits = _floats(start_logits)  # (F, L)
    end_logits = _floats(end_logits)
    n_feat, length = start_logits.shape
    k = min(n_best, length)
    # The reverse of an ascending argsort, as the reference does (its tie order kept exactly).
    s_idx = topk_desc(start_logits, k)  # (F, K)
    e_idx = topk_desc(end_logits, k)
    rows = np.arange(n_feat)[:, None]
    s_val = start_logits[rows, s_idx]  # (F, K)
    e_val = end_logits[rows, e_idx]
    in_ctx = offsets[..., 0] >= 0  # (F, L)
    s_ok = in_ctx[rows, s_idx]
    e_ok = in_ctx[rows, e_idx]
    span = e_idx[:, None, :] - s_idx[:, :, None]  # (F, K, K) end - start
    valid = s_ok[:, :, None] & e_ok[:, None, :] & (span >= 0) & (span + 1 <= max_answer_length)
    scores = s_val[:, :, None] + e_val[:, None, :]  # float32, as the reference's numpy scalars
    start_idx = np.broadcast_to(s_idx[:, :, None], span.shape).reshape(n_feat, -1)
    end_idx = np.broadcast_to(e_idx[:, None, :], span.shape).reshape(n_feat, -1)
    return start_idx, end_idx, scores.reshape(n_feat, -1), valid.reshape(n_feat, -1)


def _first_best(scores: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: index of the first maximal valid score (argmax keeps the first), and whether any is valid."""
    keyed = np.where(valid, scores, -np.inf)
    best = np.argmax(keyed, axis=1)
    has = valid.any(axis=1)
    # A valid candidate scoring -inf itself would tie with the invalid ones: take the first valid then.
    stuck = has & ~valid[np.arange(len(best)), best]
    if stuck.any():
        best[stuck] = np.argmax(valid[stuck], axis=1)
    return best, has


def decode_answers(start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray,
                   feature_to_example: Sequence[int], contexts: Sequence[str], n_best: int = 20,
                   max_answer_length: int = 30) -> list[str]:
    """Best answer text per example (index-aligned with ``contexts``).

    Args:
        start_logits, end_logits: (F, L) per-feature logits (float; -inf marks padding).
        offsets: (F, L, 2) character offsets, -1 outside the context.
        feature_to_example: (F,) index of each feature's example in ``contexts``; features of one example are
            visited in ascending feature order, as the reference does.
        contexts: the examples' context strings.
        n_best: how many top start and end logits per feature to pair.
        max_answer_length: longest answer in tokens.
    """
    f2e = np.asarray(feature_to_example, dtype=np.int64)
    answers = [""] * len(contexts)
    if len(f2e) == 0:
        return answers
    s_idx, e_idx, scores, valid = topk_candidates(start_logits, end_logits, offsets, n_best, max_answer_length)
    best, has = _first_best(scores, valid)
    rows = np.arange(len(best))
    feat_score = np.where(has, scores[rows, best], -np.inf)
    # Per example the first feature (in feature order) holding the best score: sort by example, then score
    # descending, then feature index; the head of each example's run wins.
    candidates = np.flatnonzero(has)
    order = np.lexsort((candidates, -feat_score[candidates], f2e[candidates]))
    chosen = candidates[order]
    head = np.ones(len(chosen), dtype=bool)
    head[1:] = f2e[chosen][1:] != f2e[chosen][:-1]
    for f in chosen[head]:
        b = best[f]
        s, e = s_idx[f, b], e_idx[f, b]
        answers[f2e[f]] = contexts[f2e[f]][offsets[f, s, 0]:offsets[f, e, 1]]
    return answers


def null_scores(start_logits: np.ndarray, end_logits: np.ndarray, cls_index: np.ndarray,
                feature_to_example: Sequence[int], n_examples: int) -> np.ndarray:
    """SQuAD v2 null score per example: the minimum over its features of the CLS start + end logit."""
    start_logits = np.asarray(start_logits, dtype=np.float32)
    end_logits = np.asarray(end_logits, dtype=np.float32)
    rows = np.arange(len(start_logits))
    feat_null = start_logits[rows, cls_index] + end_logits[rows, cls_index]
    out = np.full(n_examples, np.inf, dtype=np.float32)
    np.minimum.at(out, np.asarray(feature_to_example, dtype=np.int64), feat_null)
    return out


def decode_nbest(start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray,
                 feature_to_example: Sequence[int], contexts: Sequence[str], n_best: int = 20,
                 max_answer_length: int = 30, with_offsets: bool = False) -> list[list[dict]]:
    """The ``n_best`` best valid spans per example, best first, each with text, logits and probability.

    Probabilities are a softmax over the kept spans' scores (as HF's ``postprocess_qa_predictions``). Ordering is
    stable, so element 0 is the answer :func:`decode_answers` returns. ``with_offsets`` adds each span's character
    ``start``/``end`` in its context (the inference API reports them; the prediction files stay as they are).
    """
    f2e = np.asarray(feature_to_example, dtype=np.int64)
    start_logits, end_logits = _floats(start_logits), _floats(end_logits)
    out: list[list[dict]] = [[] for _ in contexts]
    if len(f2e) == 0:
        return out
    s_idx, e_idx, scores, valid = topk_candidates(start_logits, end_logits, offsets, n_best, max_answer_length)
    feats, cands = np.nonzero(valid)  # row-major: feature order, then candidate order
    ex = f2e[feats]
    cand_scores = scores[feats, cands]
    order = np.lexsort((np.arange(len(feats)), -cand_scores, ex))  # example, score desc, enumeration order
    feats, cands, ex = feats[order], cands[order], ex[order]
    first = np.ones(len(ex), dtype=bool)
    first[1:] = ex[1:] != ex[:-1]
    starts = np.flatnonzero(first)
    rank = np.arange(len(ex)) - np.repeat(starts, np.diff(np.append(starts, len(ex))))
    keep = rank < n_best  # only the n best of each example reach Python
    feats, cands, ex = feats[keep], cands[keep], ex[keep]
    s_tok, e_tok = s_idx[feats, cands], e_idx[feats, cands]
    s_char, e_char = offsets[feats, s_tok, 0], offsets[feats, e_tok, 1]
    s_log, e_log = start_logits[feats, s_tok], end_logits[feats, e_tok]
    for f_ex, a, b, sl, el in zip(ex.tolist(), s_char.tolist(), e_char.tolist(), s_log.tolist(), e_log.tolist()):
        span = {"text": contexts[f_ex][a:b], "start_logit": sl, "end_logit": el, "score": sl + el}
        if with_offsets:
            span["start"], span["end"] = a, b
        out[f_ex].append(span)
    for spans in out:
        if not spans:
            continue
        sc = np.array([s["score"] for s in spans], dtype=np.float64)
        p = np.exp(sc - sc.max())
        p /= p.sum()
        for s, prob in zip(spans, p):
            s["probability"] = float(prob)
    return out


def apply_null_rule(nbest: list[list[dict]], nulls: np.ndarray, threshold: float) -> tuple[list[str], np.ndarray]:
    """SQuAD v2: per example, "" when its null score beats the best span score by more than ``threshold``.

    Returns the answers and the null odds (null score - best span score; an example without a span counts its best
    score as -1e9), which evaluate-v2.0.py reads as ``--na-prob-file``.
    """
    best = np.array([spans[0]["score"] if spans else -1e9 for spans in nbest], dtype=np.float64)
    odds = np.asarray(nulls, dtype=np.float64) - best
    answers = ["" if (not spans or odd > threshold) else spans[0]["text"] for spans, odd in zip(nbest, odds)]
    return answers, odds
