"""Raw QA examples from local files or the Hugging Face hub, validated, as a flat ``datasets.Dataset``.
Every source ends up with the hub ``squad`` columns ``id, title, context, question, answers`` (``answers``:
``{"text": [...], "answer_start": [...]}``). Bad input is a ``QAInputError`` naming the file and row; training
rows that are safe to skip are counted in the report, and evaluation rows are never dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import QAInputError
from .formats import is_local, load_local_records


@dataclass(frozen=True)
class ColumnNames:
    """Where the fields live in the user's data (defaults: SQuAD's names)."""

    id: str = "id"
    question: str = "question"
    context: str = "context"
    answers: str = "answers"
    title: str = "title"


@dataclass
class LoadReport:
    """What loading did to the rows: nothing is dropped silently."""

    source: str
    examples: int = 0
    repaired_answers: int = 0
    unplaced_kept: int = 0  # evaluation: gold texts not found in their context, kept for scoring
    unanswerable: int = 0  # questions with an empty answer list (SQuAD v2 "no answer")
    skipped: dict = field(default_factory=dict)  # reason -> count

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def summary(self, with_source: bool = True) -> str:
        parts = [f"{self.source}: {self.examples} examples" if with_source else f"{self.examples} examples"]
        if self.unanswerable:
            parts.append(f"{self.unanswerable} unanswerable (empty answer list)")
        if self.repaired_answers:
            parts.append(f"{self.repaired_answers} answer offsets repaired")
        if self.unplaced_kept:
            parts.append(f"{self.unplaced_kept} gold answers not found in their context (kept for scoring)")
        for reason, n in sorted(self.skipped.items()):
            parts.append(f"{n} skipped ({reason})")
        return ", ".join(parts)


def _flat_answers(raw: Any, where: str, path: str, cols: ColumnNames) -> dict:
    """Accept {text: [...], answer_start: [...]}, a list of {text, answer_start}, or a JSON string of either."""
    if raw is None or raw == "":
        return {"text": [], "answer_start": []}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise QAInputError(f"{path}: {where}: column '{cols.answers}' must hold "
                               "{'text': [...], 'answer_start': [...]} (as JSON in CSV files)") from None
    if isinstance(raw, list):
        raw = {"text": [a.get("text") for a in raw if isinstance(a, dict)],
               "answer_start": [a.get("answer_start") for a in raw if isinstance(a, dict)]}
    if not isinstance(raw, dict) or "text" not in raw or "answer_start" not in raw:
        raise QAInputError(f"{path}: {where}: column '{cols.answers}' must be {{'text': [...], 'answer_start': [...]}}")
    text, start = raw["text"], raw["answer_start"]
    if isinstance(text, str):
        text, start = [text], [start]
    text, start = list(text or []), list(start or [])
    if len(text) != len(start):
        raise QAInputError(f"{path}: {where}: {len(text)} answer texts but {len(start)} answer_start values")
    return {"text": text, "answer_start": start}


def _repair(context: str, text: str, start: Any) -> int | None:
    """Character start of ``text`` in ``context``: the given one if right, else the nearest occurrence, else None."""
    try:
        start = int(start)
    except (TypeError, ValueError):
        start = -1
    if 0 <= start and context[start:start + len(text)] == text:
        return start
    best, pos = None, context.find(text)
    while pos != -1:
        if best is None or abs(pos - start) < abs(best - start):
            best = pos
        pos = context.find(text, pos + 1)
    return best


def _checked_text(row: dict, where: str, source: str, cols: ColumnNames, require_answers: bool) -> tuple[str, str]:
    """(context, question) of a row, or a QAInputError naming the row and what is missing or wrong."""
    missing = [c for c in (cols.question, cols.context) if c not in row]
    if require_answers and cols.answers not in row:
        missing.append(cols.answers)
    if missing:
        raise QAInputError(f"{source}: {where}: missing column(s) {missing}; the row has {sorted(k for k in row if k != '_row')} "
                           "(set --data.question_column/context_column/answer_column/id_column to map yours)")
    context, question = row[cols.context], row[cols.question]
    for name, value in ((cols.context, context), (cols.question, question)):
        if not isinstance(value, str):
            raise QAInputError(f"{source}: {where}: '{name}' must be a string, got {type(value).__name__}")
        if not value.strip():
            raise QAInputError(f"{source}: {where}: '{name}' is empty")
    return context, question


def _placed_answers(answers: dict, context: str, report: LoadReport, training: bool) -> tuple[list[str], list[int]]:
    """Training: answers whose text is found in the context (offsets repaired to the nearest occurrence), the rest
    counted as skipped. Evaluation: every gold text is kept, as the official scripts score against all of them
    (start -1 where the text is not in the context; an empty list is what marks a v2 question unanswerable)."""
    texts, starts = [], []
    for text, start in zip(answers["text"], answers["answer_start"]):
        if not isinstance(text, str) or (training and not text):
            report.skip("empty answer text dropped")
            continue
        fixed = _repair(context, text, start) if text else None
        if fixed is None and training:
            report.skip("answer text not found in its context")
            continue
        if fixed is None:
            report.unplaced_kept += 1
        elif fixed != start:
            report.repaired_answers += 1
        texts.append(text)
        starts.append(-1 if fixed is None else fixed)
    return texts, starts


def normalise_records(rows: Iterable[dict], source: str, split: str,
                      cols: ColumnNames = ColumnNames()) -> tuple[list[dict], LoadReport]:
    """Validate raw rows (``source``: the file or dataset named in messages) and bring them to the standard columns.
    ``split`` "train" needs an answer column and skips examples whose answer cannot be placed; other splits keep every
    example."""
    report = LoadReport(source=source)
    training = split == "train"
    out, seen = [], {}
    for i, row in enumerate(rows):
        where = row.get("_row", f"row {i}")
        context, question = _checked_text(row, where, source, cols, training)
        qid = row.get(cols.id)
        qid = str(qid) if qid not in (None, "") else f"{split}-{i}"
        if qid in seen:
            raise QAInputError(f"{source}: {where}: duplicate id {qid!r} (first seen at {seen[qid]}); ids must be unique")
        seen[qid] = where
        answers = _flat_answers(row.get(cols.answers), where, source, cols)
        report.unanswerable += int(cols.answers in row and not answers["text"])
        texts, starts = _placed_answers(answers, context, report, training)
        if training and answers["text"] and not texts:
            report.skip("training example without a placeable answer")
            continue
        out.append({"id": qid, "title": str(row.get(cols.title, "") or ""), "context": context, "question": question,
                    "answers": {"text": texts, "answer_start": starts}})
    report.examples = len(out)
    if not out:
        raise QAInputError(f"{source}: no usable examples in split '{split}'")
    return out, report


def check_unanswerable(report: LoadReport, version_2_with_negative: bool) -> None:
    """Refuse questions with an empty answer list unless the run is SQuAD v2: v1 rules would train them towards the
    CLS token (which v1 decoding never predicts) and score them as wrong, without a word."""
    if report.unanswerable and not version_2_with_negative:
        raise QAInputError(
            f"{report.source}: {report.unanswerable} of {report.examples} questions have an empty answer list "
            "(SQuAD v2 unanswerable questions): pass --data.version_2_with_negative true to train and score them as "
            "SQuAD v2 (answer \"\" when no span beats the null score), or remove them from the file")


def to_dataset(records: list[dict]):
    """Standard-column records -> ``datasets.Dataset`` with fixed feature types."""
    import datasets

    features = datasets.Features({
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {"text": datasets.Sequence(datasets.Value("string")),
                    "answer_start": datasets.Sequence(datasets.Value("int32"))},
    })
    return datasets.Dataset.from_list(records, features=features)


def _load_hub(name: str, config: str | None, split: str):
    import datasets

    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as err:  # offline, unknown name, missing split: all user-actionable
        kind = type(err).__name__
        raise QAInputError(
            f"could not load split '{split}' of dataset '{name}' from the Hugging Face hub ({kind}: "
            f"{str(err).splitlines()[0][:160] if str(err) else 'no detail'}); offline or behind a firewall, point it at "
            "local files instead: --data.train_file PATH --data.validation_file PATH (official SQuAD .json, "
            ".jsonl, .csv or .parquet)"
        ) from None


def load_split(path_or_name: str, split: str, config: str | None = None, cols: ColumnNames = ColumnNames(),
               max_samples: int | None = None, version_2_with_negative: bool | None = None):
    """One split of a local file or a hub dataset (``config``: its configuration), validated, its first
    ``max_samples`` examples; returns ``(datasets.Dataset, LoadReport)``. ``version_2_with_negative`` False refuses
    questions with an empty answer list (:func:`check_unanswerable`) except in "predict"; None: no check."""
    if is_local(path_or_name):
        rows = load_local_records(path_or_name)
    else:
        hub = _load_hub(path_or_name, config, "validation" if split in ("test", "predict") else split)
        if max_samples is not None:
            hub = hub.select(range(min(max_samples, len(hub))))
        rows = hub.to_list()
    if max_samples is not None:
        rows = rows[:max_samples]
    records, report = normalise_records(rows, path_or_name, split, cols)
    if version_2_with_negative is not None and split != "predict":
        check_unanswerable(report, version_2_with_negative)
    return to_dataset(records), report
