"""sources.py: every local format gives the same examples; column mapping; answer repair; one-line errors."""

from __future__ import annotations

import csv
import json

import pytest

from qa_lightning.errors import QAInputError
from qa_lightning.data.sources import ColumnNames, load_split
from conftest import TINY_DEV


def flat_records(path=TINY_DEV):
    rows = []
    for article in json.loads(path.read_text())["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                rows.append({"id": qa["id"], "title": article["title"], "question": qa["question"],
                             "context": para["context"],
                             "answers": {"text": [a["text"] for a in qa["answers"]],
                                         "answer_start": [a["answer_start"] for a in qa["answers"]]}})
    return rows


def write(tmp_path, fmt, rows, name="data"):
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()})
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
def test_every_format_gives_the_same_examples(tmp_path, fmt):
    ref, _ = load_split(str(TINY_DEV), "validation")
    ours, report = load_split(str(write(tmp_path, fmt, flat_records())), "validation")
    assert ours.to_list() == ref.to_list()
    assert report.examples == 40 and not report.skipped


def test_custom_column_names(tmp_path):
    rows = [{"qid": r["id"], "q": r["question"], "passage": r["context"], "gold": r["answers"]} for r in flat_records()]
    cols = ColumnNames(id="qid", question="q", context="passage", answers="gold")
    ours, _ = load_split(str(write(tmp_path, "jsonl", rows)), "train", cols=cols)
    ref, _ = load_split(str(TINY_DEV), "train")
    assert [r["question"] for r in ours] == [r["question"] for r in ref]
    assert ours[0]["answers"] == ref[0]["answers"]


def test_answer_repair_and_counted_skips(tmp_path):
    rows = flat_records()
    rows[0]["answers"] = {"text": [rows[0]["answers"]["text"][0]], "answer_start": [rows[0]["answers"]["answer_start"][0] + 3]}
    rows[1]["answers"] = {"text": ["no such words anywhere"], "answer_start": [0]}
    path = write(tmp_path, "jsonl", rows)
    train, report = load_split(str(path), "train")
    assert report.repaired_answers == 1
    assert report.skipped == {"answer text not found in its context": 1,
                              "training example without a placeable answer": 1}
    assert len(train) == 39 and "39 examples" in report.summary() and "1 answer offsets repaired" in report.summary()
    fixed = train[0]["answers"]
    assert train[0]["context"][fixed["answer_start"][0]:].startswith(fixed["text"][0])
    val, vreport = load_split(str(path), "validation")
    assert len(val) == 40  # evaluation never drops an example, nor a gold text (the official scripts score all)
    assert val[1]["answers"] == {"text": ["no such words anywhere"], "answer_start": [-1]}
    assert vreport.unplaced_kept == 1 and "1 gold answers not found in their context (kept for scoring)" in \
        vreport.summary()


BAD = {
    "malformed_json": ("bad.json", '{"data": [\n  {"title": "x",\n   "paragraphs": [}\n]}', "malformed JSON at line 3"),
    "malformed_jsonl": ("bad.jsonl", '{"question": "q", "context": "c"}\n{"question": \n', "line 2: malformed JSON"),
    "missing_columns": ("bad.csv", "query,passage\nwho?,Someone.\n", "missing column(s) ['question', 'context']"),
    "empty_context": ("bad.jsonl", '{"id": "a", "question": "Who?", "context": "   "}\n', "row 0: 'context' is empty"),
    "empty_question": ("bad.jsonl", '{"id": "a", "question": "", "context": "Text."}\n', "row 0: 'question' is empty"),
    "duplicate_ids": ("bad.jsonl", '{"id": "a", "question": "Who?", "context": "A."}\n'
                      '{"id": "a", "question": "What?", "context": "B."}\n', "row 1: duplicate id 'a'"),
    "context_not_string": ("bad.jsonl", '{"id": "a", "question": "Who?", "context": 42}\n',
                           "row 0: 'context' must be a string, got int"),
    "not_utf8": ("bad.json", b'{"data": ["\xff\xfe"]}', "not UTF-8"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_is_one_line_naming_file_and_row(tmp_path, kind):
    name, content, needle = BAD[kind]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(QAInputError) as err:
        load_split(str(path), "validation")
    msg = str(err.value)
    assert "\n" not in msg and name in msg and needle in msg, msg


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(QAInputError, match="no such file"):
        load_split(str(tmp_path / "nope.json"), "train")
    with pytest.raises(QAInputError, match="is a directory"):
        load_split(str(tmp_path) + "/", "train")
