"""Post-processing: gathered logits + EvalSet + settings -> predictions, n-best, null odds, metrics -> files.

    post = PostProcessor(DecodeSettings(n_best=20, max_answer_length=30))
    result = post(start, end, seen, eval_set, score=True)   # (F, W) logits in dataset order, (F,) bool
    result.metrics                                          # {"exact_match": ..., "f1": ...}
    write_outputs(run_dir, result, {"epoch": 0, "step": 100, "split": "validation"})

Pure numpy and Python: no Lightning, no torch.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from ..files import write_json
from .decoding import apply_null_rule, decode_nbest, null_scores
from .evalset import EvalSet
from .metrics import SquadV1Scorer, squad_v1, squad_v2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeSettings:
    """How logits become answers.

    Args:
        n_best: top start/end logits paired per feature.
        max_answer_length: longest answer in tokens.
        version_2_with_negative: SQuAD v2 (an example may answer "").
        null_score_diff_threshold: v2: answer "" when null score - best span score exceeds this.
    """

    n_best: int = 20
    max_answer_length: int = 30
    version_2_with_negative: bool = False
    null_score_diff_threshold: float = 0.0


@dataclass
class EvalResult:
    """One evaluation's outputs, for the examples whose every feature was evaluated."""

    predictions: dict  # {id: text}
    nbest: dict  # {id: [{"text", "start_logit", "end_logit", "score", "probability"}, ...]}
    null_odds: Optional[dict] = None  # v2 only: {id: null score - best span score}
    metrics: dict = field(default_factory=dict)  # empty when not scored (predict) or nothing was complete
    examples: int = 0  # examples scored / predicted
    partial: int = 0  # examples left out because only some of their features were evaluated


def complete_examples(ev: EvalSet, seen: np.ndarray) -> np.ndarray:
    """(E,) bool: every feature of the example was evaluated (``limit_*_batches`` may leave some out)."""
    complete = np.ones(len(ev.example_ids), dtype=bool)
    np.logical_and.at(complete, ev.feature_to_example, np.asarray(seen, dtype=bool))
    return complete


class PostProcessor:
    """Decodes and scores evaluations with fixed settings; gold answers are prepared once per EvalSet.

    Args:
        settings: decoding settings (n-best, answer length, v2 null rule).
        metric_fn: ``fn(predictions, references) -> dict`` replacing the built-in metric (e.g.
            ``metrics.evaluate_metric``); None: the built-in official definitions.
    """

    def __init__(self, settings: DecodeSettings = DecodeSettings(),
                 metric_fn: Optional[Callable[[Mapping[str, str], Mapping[str, Sequence[str]]], dict]] = None):
        self.settings = settings
        self.metric_fn = metric_fn
        self._scorer: Optional[tuple[EvalSet, SquadV1Scorer]] = None  # reused while the EvalSet is the same

    def __call__(self, start: np.ndarray, end: np.ndarray, seen: np.ndarray, ev: EvalSet,
                 score: bool = True) -> EvalResult:
        """``start``/``end``: (F, ev.width) float logits in dataset order (-inf outside real tokens); ``seen``: (F,)."""
        s = self.settings
        complete = complete_examples(ev, seen)
        if not complete.all():
            log.warning("%d of %d examples were only partly evaluated (limit_*_batches?) and are left out",
                        int((~complete).sum()), len(complete))
        # The first of each n-best list is exactly decode_answers' choice (tested): decode once.
        nbest = decode_nbest(start, end, ev.offsets, ev.feature_to_example, ev.contexts, s.n_best, s.max_answer_length)
        ids, keep = ev.example_ids, np.flatnonzero(complete)
        if s.version_2_with_negative:
            nulls = null_scores(start, end, ev.cls_index, ev.feature_to_example, len(ids))
            answers, odds = apply_null_rule(nbest, nulls, s.null_score_diff_threshold)
        else:
            answers, odds = [spans[0]["text"] if spans else "" for spans in nbest], None
        result = EvalResult(predictions={ids[i]: answers[i] for i in keep}, nbest={ids[i]: nbest[i] for i in keep},
                            null_odds=None if odds is None else {ids[i]: float(odds[i]) for i in keep},
                            examples=len(keep), partial=int((~complete).sum()))
        if score and len(keep):
            result.metrics = self._score(result, ev, keep, complete.all())
        return result

    def _score(self, result: EvalResult, ev: EvalSet, keep: np.ndarray, whole: bool) -> dict:
        if self.metric_fn is not None:
            return self.metric_fn(result.predictions, {ev.example_ids[i]: ev.answers[i] for i in keep})
        if self.settings.version_2_with_negative:
            golds = {ev.example_ids[i]: ev.answers[i] for i in keep}
            # Predictions already answer "" past the threshold: score them as they are (the official script
            # without --na-prob-thresh gives the same numbers) and sweep null_odds for best_exact/best_f1.
            metrics = squad_v2(result.predictions, golds, na_probs=result.null_odds, na_prob_thresh=float("inf"))
            return {**metrics, "exact_match": metrics["exact"]}
        if not whole:
            return squad_v1(result.predictions, {ev.example_ids[i]: ev.answers[i] for i in keep})
        if self._scorer is None or self._scorer[0] is not ev:  # a new EvalSet (setup ran again): new golds
            self._scorer = (ev, SquadV1Scorer(dict(zip(ev.example_ids, ev.answers))))
        return self._scorer[1](result.predictions)


def write_outputs(out_dir: str, result: EvalResult, info: Optional[dict] = None, say: bool = False) -> list[str]:
    """Write the prediction files and, when scored, ``eval_results.json`` (metrics + ``info``); returns the names.

    One line "SPLIT: wrote NAMES to DIR" goes to the log, and with ``say`` to stderr too.
    """
    files = {"predictions.json": result.predictions, "nbest_predictions.json": result.nbest}
    if result.null_odds is not None:
        files["null_odds.json"] = result.null_odds
    if result.metrics:
        files["eval_results.json"] = {**result.metrics, **(info or {}), "examples": result.examples}
    for name, obj in files.items():
        write_json(os.path.join(out_dir, name), obj)
    line = f"{(info or {}).get('split', 'evaluation')}: wrote {', '.join(files)} to {out_dir}"
    log.info(line)
    if say:
        print(line, file=sys.stderr)
    return list(files)
