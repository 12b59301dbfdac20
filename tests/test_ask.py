"""``python -m qa_lightning ask`` (qa_lightning/ask.py): one question, JSON lines = predict's answers, one-line
errors, the dispatch from the main command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from qa_lightning.__main__ import main as entry
from qa_lightning.export import run_metadata, save_hf_directory
from qa_lightning.hf import build_model, load_tokenizer
from conftest import ROOT, TINY_BERT, TINY_DEV, one_error_line, squad_examples

DEV = squad_examples(TINY_DEV)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def ask_main(args):
    """``python -m qa_lightning ask ARGS`` in this process (the console script's entry)."""
    entry(["ask", *args])


def ask(*args, stdin=None, cwd=None):
    """Run the command as a user does, from another directory."""
    return subprocess.run([sys.executable, "-m", "qa_lightning", "ask", *map(str, args)], input=stdin, env=ENV,
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_one_question_prints_answer_score_and_position(tiny_export, tmp_path):
    ctx = tmp_path / "context.txt"
    ctx.write_text(DEV["context"][0], encoding="utf-8")
    proc = ask("--model", tiny_export, "--question", DEV["question"][0], "--context-file", ctx, "--top-k", "2",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = re.findall(r"^(\d)\. (.*)\n\s+score (0\.\d+)  characters (\d+)-(\d+)$", proc.stdout, re.M)
    assert [f[0] for f in found] == ["1", "2"]
    for _, text, _, start, end in found:
        assert DEV["context"][0][int(start):int(end)] == text
    proc = ask("--model", tiny_export, "--question", DEV["question"][0], "--context", DEV["context"][0], cwd=tmp_path)
    assert proc.stdout.startswith(f"answer: {found[0][1]}\n") and f"characters {found[0][3]}-" in proc.stdout


def test_recorded_settings_can_be_overridden(tiny_export, tmp_path, capsys):
    ask_main(["--model", tiny_export, "--question", DEV["question"][0], "--context", DEV["context"][0],
              "--top-k", "3", "--n-best", "1"])
    assert re.findall(r"^(\d)\. ", capsys.readouterr().out, re.M) == ["1"]  # one start x one end: one span
    v2 = save_hf_directory(build_model(str(TINY_BERT), pretrained=False).eval(), load_tokenizer(str(TINY_BERT)),
                           str(tmp_path / "v2"), run_metadata({"model_name_or_path": str(TINY_BERT)},
                                                              {"max_length": 128, "stride": 32,
                                                               "version_2_with_negative": True}))
    base = ["--model", v2, "--question", DEV["question"][0], "--context", DEV["context"][0]]
    ask_main([*base, "--null-threshold=-1e9"])
    assert capsys.readouterr().out.startswith("answer: (no answer: the null score beats the best span by")
    ask_main([*base, "--null-threshold", "1e9"])
    assert "characters" in capsys.readouterr().out


@pytest.mark.parametrize("args, stdin, message", [
    ([], None, "error: --model is required"),
    (["--model", "MISSING", "--question", "Who?", "--context", "Bob."], None, "no such model folder or checkpoint"),
    (["--model", str(ROOT / "tests"), "--question", "Who?", "--context", "Bob."], None, "not a model folder"),
    (["--model", "EXPORT", "--question", " ", "--context", "Bob."], None, "--question is empty"),
    (["--model", "EXPORT", "--question", "Who?", "--context", ""], None, "the context is empty"),
    (["--model", "EXPORT", "--question", "Who?"], None, "--question needs --context"),
    (["--model", "EXPORT", "--question", "Who?", "--context-file", "nope.txt"], None, "nope.txt: no such file"),
    (["--model", "EXPORT", "--context", "Bob."], None, "--context needs --question"),
    (["--model", "EXPORT", "--top-k", "zero"], None, "argument --top-k: invalid int value"),
    (["--model", "EXPORT", "--question", "Who?", "--context", "Bob.", "--batch-size", "0"], None,
     "batch_size, n_best and max_answer_length must be >= 1"),
    (["--model", "EXPORT", "--question", "Who?", "--context", "Bob.", "--max-length", "4"], None,
     "max_length=4 is too small"),
    (["--model", "EXPORT", "--question", "Who?", "--context", "Bob.", "--stride", "128"], None,
     "stride=128 must be >= 0 and smaller than max_length=128"),
    (["--model", "EXPORT"], '{"question": "Who?", "context": "Bob."}\n{"question": "Who?", "context": \n',
     "stdin line 2: malformed JSON"),
    (["--model", "EXPORT"], '{"question": "Who?", "context": "Bob."}\n\n{"question": "Who?"}\n',
     "stdin line 3: 'context' is missing"),
    (["--model", "EXPORT"], '["Who?", "Bob."]\n', "stdin line 1: expected an object"),
    (["--model", "EXPORT"], "\n", "stdin: no questions"),
])
def test_mistakes_are_one_error_line_and_exit_2(tiny_export, monkeypatch, capsys, args, stdin, message):
    import io

    args = [tiny_export if a == "EXPORT" else a for a in args]
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as ex:
        ask_main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert ex.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_not_a_qa_model_as_a_user_sees_it(tmp_path):
    from transformers import AutoModel

    base = tmp_path / "base"
    AutoModel.from_config(build_model(str(TINY_BERT), pretrained=False).config).save_pretrained(base)
    proc = ask("--model", base, "--question", "Who?", "--context", "Bob went home.", cwd=tmp_path)
    assert "not a question-answering model" in one_error_line(proc)


def test_main_command_line_dispatches_ask_and_its_help_lists_every_subcommand(tiny_export, capsys):
    entry(["ask", "--model", tiny_export, "--question", "Who?", "--context", "Bob went home."])  # `qa-lightning`
    assert capsys.readouterr().out.startswith("answer: ")
    proc = subprocess.run([sys.executable, "-m", "qa_lightning", "--help"], env=ENV, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m qa_lightning ")
    assert "__main__.py" not in proc.stdout  # the program is named as the user runs it
    assert "{fit,validate,test,predict,ask,export}" in proc.stdout
    for name in ("fit", "validate", "test", "predict", "ask", "export"):  # each with its help line
        assert re.search(rf"^    {name} +\S", proc.stdout, re.M), name


@pytest.mark.slow
def test_jsonl_answers_are_exactly_predicts(predicted, tmp_path):
    proc = ask("--model", predicted["export"], stdin=predicted["questions"].read_text(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in predicted["records"]]  # input order
    assert {r["id"]: r["answer"] for r in rows} == predicted["predictions"]
    for row, rec in zip(rows, predicted["records"]):
        assert set(row) == {"id", "answer", "start", "end", "score"}
        assert rec["context"][row["start"]:row["end"]] == row["answer"]


def test_records_without_an_id_get_their_line_number_as_a_string_id(tiny_export, tmp_path):
    lines = [{"question": DEV["question"][0], "context": DEV["context"][0]},
             {"id": 7, "question": DEV["question"][1], "context": DEV["context"][1]}]
    proc = ask("--model", tiny_export, stdin="".join(json.dumps(r) + "\n" for r in lines), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["id"] for line in proc.stdout.splitlines()] == ["1", "7"]  # strings, as predict's ids
