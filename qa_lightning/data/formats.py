"""Local QA file formats: each reader turns one file into raw records (dicts), errors naming file and line;
``sources.py`` validates the records."""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Callable, Iterable, Iterator

from ..errors import QAInputError


def jsonl_lines(lines: Iterable[str], source: str) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank JSON line; a malformed line is a QAInputError naming it."""
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as err:
                raise QAInputError(f"{source} line {n}: malformed JSON ({err.msg} at column {err.colno})") from None


def _read_jsonl(path: str) -> list:
    with open(path, encoding="utf-8") as fh:
        return [row for _, row in jsonl_lines(fh, path)]


def _squad_nested_to_records(data: list, path: str) -> list[dict]:
    """Flatten the official SQuAD nesting; rows are named like data[3].paragraphs[1].qas[0] in errors."""
    records = []
    for a, article in enumerate(data):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise QAInputError(f"{path}: data[{a}] has no 'paragraphs' list")
        title = article.get("title", "")
        for p, para in enumerate(article["paragraphs"]):
            where = f"data[{a}].paragraphs[{p}]"
            if not isinstance(para, dict) or "context" not in para or not isinstance(para.get("qas"), list):
                raise QAInputError(f"{path}: {where} needs a 'context' and a 'qas' list")
            for q, qa in enumerate(para["qas"]):
                if not isinstance(qa, dict):
                    raise QAInputError(f"{path}: {where}.qas[{q}] is not an object")
                answers = qa.get("answers", [])
                if not isinstance(answers, list):
                    raise QAInputError(f"{path}: {where}.qas[{q}] 'answers' must be a list")
                records.append({
                    "id": qa.get("id"),
                    "title": title,
                    "context": para["context"],
                    "question": qa.get("question"),
                    "answers": {
                        "text": [x.get("text") if isinstance(x, dict) else None for x in answers],
                        "answer_start": [x.get("answer_start") if isinstance(x, dict) else None for x in answers],
                    },
                    "_row": f"{where}.qas[{q}]",
                })
    return records


def _read_csv(path: str) -> list:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _read_parquet(path: str) -> list:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several types for a broken file
        raise QAInputError(f"{path}: unreadable parquet file ({type(err).__name__}: {err})") from None


def _read_json_records(path: str) -> list:
    """Official nested SQuAD JSON (flattened), a list of records, or ``{"data": [records]}``."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except json.JSONDecodeError as err:
        raise QAInputError(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    data = obj.get("data") if isinstance(obj, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict) and "paragraphs" in data[0]:
        return _squad_nested_to_records(data, path)
    if isinstance(data, list):
        return data
    if isinstance(obj, list):
        return obj
    raise QAInputError(f"{path}: expected the SQuAD layout {{'data': [...]}} or a list of records")


# File suffix -> reader returning raw records (dicts). A new local format is one function and one entry here.
READERS: dict[str, Callable[[str], list]] = {
    ".json": _read_json_records,
    ".jsonl": _read_jsonl,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
}


def is_local(path_or_name: str) -> bool:
    return path_or_name.lower().endswith(tuple(READERS)) or os.sep in path_or_name or os.path.exists(path_or_name)


def load_local_records(path: str) -> list[dict]:
    """Read a local file into a list of raw records (SQuAD nesting flattened; flat formats as they are)."""
    if not os.path.exists(path):
        raise QAInputError(f"{path}: no such file (check the path, relative to {os.getcwd()})")
    if os.path.isdir(path):
        raise QAInputError(f"{path}: is a directory, expected a .json/.jsonl/.csv/.parquet file")
    reader = READERS.get(os.path.splitext(path)[1].lower(), _read_json_records)
    try:
        rows = reader(path)
    except PermissionError:
        raise QAInputError(f"{path}: permission denied") from None
    except UnicodeDecodeError as err:
        raise QAInputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise QAInputError(f"{path}: row {i} is not a record (got {type(row).__name__})")
        row.setdefault("_row", f"row {i}")
    return rows
