"""Ask a trained model questions from Python: no pipeline, no Lightning, the answers ``predict`` gives.

    qa = QAModel.from_pretrained("runs/demo/lightning_logs/version_0/export")   # or a fit .ckpt
    best = qa.answer("Who wrote it?", context)   # Answer; top_k=3: [Answer, ...]; answer_many(records)

Evaluation's windows, padding, length-sorted batches and decoding (the SQuAD v2 null rule too), with the settings
and the automatic precision (bf16 autocast where training's is bf16) of evaluation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
import torch

from .data.batching import QACollator
from .data.features import check_window_args, cls_positions, cls_token_id, prepare_validation_features
from .data.samplers import sorted_by_length
from .errors import QAInputError
from .evaluation.decoding import apply_null_rule, decode_nbest, null_scores
from .evaluation.evalset import offsets_array
from .evaluation.gather import align_logits
from .export import SETTINGS, SETTINGS_FILE, inference_settings, model_from_checkpoint
from .hf import build_model, load_tokenizer
from .precision import choose_precision


@dataclass
class Answer:
    """One answer to one question.

    Attributes:
        text: the answer, a slice of the context ("" when no span is valid or, SQuAD v2, "no answer" won).
        start, end: its characters in the context (``context[start:end] == text``); None for "no answer".
        score: probability among the n-best spans (with the null candidate, for a v2 "no answer").
        no_answer: SQuAD v2 models only: True when "no answer" beat the best span (None for v1 models).
        null_odds: v2: null score - best span score; "no answer" wins when it exceeds ``threshold``.
        threshold: v2: the null score difference threshold used.
    """

    text: str
    start: Optional[int]
    end: Optional[int]
    score: float
    no_answer: Optional[bool] = None
    null_odds: Optional[float] = None
    threshold: Optional[float] = None


def _check_qa_folder(path: str) -> None:
    """One line for a folder without a question-answering model."""
    try:
        with open(os.path.join(path, "config.json")) as fh:
            archs = json.load(fh).get("architectures") or []
    except (OSError, ValueError):
        raise QAInputError(f"{path}: not a model folder (no readable config.json); pass the export folder of a run "
                           "(<run folder>/export) or a .ckpt written by `python -m qa_lightning fit`") from None
    if not any(a.endswith("ForQuestionAnswering") for a in archs):
        raise QAInputError(f"{path}: not a question-answering model (architectures {archs}); fine-tune it first "
                           "with `python -m qa_lightning fit` and pass its export folder")


def load_model_and_settings(path: str):
    """``(model, tokenizer, settings)`` from an export folder or a QAModule ``.ckpt``."""
    if os.path.isdir(path):
        _check_qa_folder(path)
        meta = {}
        if os.path.isfile(os.path.join(path, SETTINGS_FILE)):
            with open(os.path.join(path, SETTINGS_FILE)) as fh:
                meta = json.load(fh)
        settings = {k: meta[k] for k in SETTINGS if k in meta}
        if len(settings) < len(SETTINGS):  # not recorded (a plain HF folder): from its hyper-parameters or defaults
            settings = {**inference_settings(meta.get("hyper_parameters", {}), meta.get("data", {})), **settings}
        return build_model(path, pretrained=True).eval(), load_tokenizer(path), settings
    if os.path.isfile(path):
        model, tokenizer, ckpt = model_from_checkpoint(path)
        data_hp = ckpt.get("datamodule_hyper_parameters", {})
        return model, tokenizer, inference_settings(ckpt["hyper_parameters"], data_hp)
    raise QAInputError(f"{path}: no such model folder or checkpoint; pass the export folder of a run "
                       "(<run folder>/export) or a .ckpt")


def check_record(record: dict, where: str) -> tuple[str, str]:
    """``(question, context)`` of a record, or a :class:`QAInputError` naming ``where`` and what is wrong."""
    if not isinstance(record, dict):
        raise QAInputError(f"{where}: expected an object with 'question' and 'context', got {type(record).__name__}")
    values = []
    for key in ("question", "context"):
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            raise QAInputError(f"{where}: '{key}' is {'missing' if value is None else 'empty or not text'}")
        values.append(value)
    return values[0], values[1]


class QAModel:
    """A fine-tuned extractive QA model with its windowing and decoding settings.

    Args:
        model: an ``AutoModelForQuestionAnswering`` model.
        tokenizer: its fast tokenizer.
        settings: windowing and decoding settings (``export.SETTINGS``; missing keys: the constructors' defaults of
            the module and data module).
        device: "cpu", "cuda", ... (None: CUDA when available, else CPU).
    """

    def __init__(self, model, tokenizer, settings: Optional[dict] = None, device: Optional[str] = None):
        settings, unknown = dict(settings or {}), set(settings or {}) - set(SETTINGS)
        if unknown:
            raise QAInputError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(SETTINGS)}")
        self.settings = settings if set(settings) == set(SETTINGS) else {**inference_settings({}, {}), **settings}
        try:
            check_window_args(int(self.settings["max_length"]), int(self.settings["stride"]))
        except ValueError as err:
            raise QAInputError(f"max_length/stride: {err}") from None
        if min(self.settings["batch_size"], self.settings["n_best"], self.settings["max_answer_length"]) < 1:
            raise QAInputError("batch_size, n_best and max_answer_length must be >= 1")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        # predict's automatic precision (precision.py): in fp32 here some answers would differ from predict's.
        self.bf16 = choose_precision(self.device.type)[0] == "bf16-mixed"
        self._collate = QACollator.for_tokenizer(tokenizer, self.settings["pad_to_multiple_of"],
                                                 self.settings["max_length"] if self.settings["pad_to_max_length"]
                                                 else None)

    @classmethod
    def from_pretrained(cls, path: str, device: Optional[str] = None, **settings) -> "QAModel":
        """Load an export folder or a ``.ckpt``; keyword ``settings`` override the recorded ones."""
        model, tokenizer, recorded = load_model_and_settings(str(path))
        return cls(model, tokenizer, {**recorded, **settings}, device)

    def answer(self, question: str, context: str, top_k: int = 1):
        """The best answer (``top_k=1``) or the ``top_k`` best, best first, to one question about ``context``."""
        return self.answer_many([{"question": question, "context": context}], top_k=top_k)[0]

    def answer_many(self, records: Iterable[dict], top_k: int = 1) -> list:
        """Answers for many ``{"question", "context"}`` records (in order), batched by length like evaluation."""
        if top_k < 1:
            raise QAInputError(f"top_k must be >= 1, got {top_k}")
        pairs = [check_record(r, f"record {r.get('id', i) if isinstance(r, dict) else i}")
                 for i, r in enumerate(records)]
        if not pairs:
            return []
        s = self.settings
        feats = prepare_validation_features(
            {"id": list(range(len(pairs))), "question": [q for q, _ in pairs], "context": [c for _, c in pairs]},
            self.tokenizer, s["max_length"], s["stride"], pad_to_max_length=s["pad_to_max_length"])
        width = max(int(s["max_length"]), max(len(ids) for ids in feats["input_ids"]))
        start, end = self._logits(feats, width)
        f2e = np.asarray(feats["example_id"], dtype=np.int64)
        contexts = [c for _, c in pairs]
        nbest = decode_nbest(start, end, offsets_array(feats["offset_mapping"], width), f2e, contexts,
                             s["n_best"], s["max_answer_length"], with_offsets=True)
        if not s["version_2_with_negative"]:
            out = [[Answer(sp["text"], sp["start"], sp["end"], sp["probability"]) for sp in spans[:top_k]]
                   or [Answer("", None, None, 0.0)] for spans in nbest]
        else:
            out = self._v2(start, end, feats, f2e, nbest, top_k)
        return [a[0] for a in out] if top_k == 1 else out

    def _v2(self, start, end, feats, f2e, nbest, top_k) -> list[list[Answer]]:
        """The v2 null rule as evaluation applies it; a winning "no answer" comes first."""
        cls = cls_positions(feats["input_ids"], cls_token_id(self.tokenizer))
        nulls = null_scores(start, end, cls, f2e, len(nbest))
        thr = float(self.settings["null_score_diff_threshold"])
        _, odds = apply_null_rule(nbest, nulls, thr)  # the rule evaluation applies: "" when odds > thr
        out = []
        for spans, odd, null in zip(nbest, odds, nulls):
            scores = np.array([float(null)] + [sp["score"] for sp in spans], dtype=np.float64)
            p = np.exp(scores - scores.max())
            p_null = float(p[0] / p.sum())
            common = dict(null_odds=float(odd), threshold=thr)
            spans_out = [Answer(sp["text"], sp["start"], sp["end"], sp["probability"], False, **common)
                         for sp in spans]
            if not spans or odd > thr:
                spans_out.insert(0, Answer("", None, None, p_null, True, **common))
            out.append(spans_out[:top_k])
        return out

    @torch.inference_mode()
    def _logits(self, feats: dict, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(F, width) float32 start/end logits, -inf past each feature's tokens, in feature order."""
        names = [n for n in self.tokenizer.model_input_names if n in feats]
        rows = [{n: feats[n][i] for n in names} for i in range(len(feats["input_ids"]))]
        order = sorted_by_length([len(r["input_ids"]) for r in rows])  # as evaluation: longest first
        start = np.empty((len(rows), width), dtype=np.float32)
        end = np.empty_like(start)
        bs = int(self.settings["batch_size"])
        for b in range(0, len(order), bs):
            idx = order[b:b + bs]
            batch = {k: v.to(self.device) for k, v in self._collate([rows[i] for i in idx]).items()}
            pad_left = batch.pop("pad_left", None)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.model(**batch)
            mask = batch.get("attention_mask")
            start[idx] = align_logits(out.start_logits, mask, width, pad_left).cpu().numpy()
            end[idx] = align_logits(out.end_logits, mask, width, pad_left).cpu().numpy()
        return start, end
