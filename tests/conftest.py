"""Shared fixtures: offline environment, fixture paths, the bert-base-cased tokenizer copy, ../shared detection.

Run: ``make test`` (everything) or ``make test-fast`` (skips tests marked slow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa_lightning.hf import env_defaults

env_defaults(offline=True)  # tests never touch the network

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TINY_BERT = FIXTURES / "tiny-bert"  # config of a tiny BERT + the bert-base-cased tokenizer (Apache-2.0, Google)
TINY_TRAIN = FIXTURES / "squad_tiny_train.json"  # SQuAD v1.1 dev slices, CC BY-SA 4.0 (see fixtures/README.md)
TINY_DEV = FIXTURES / "squad_tiny_dev.json"
SHARED = Path(os.environ.get("QA_LIGHTNING_SHARED", ROOT.parent / "shared"))
SHARED_DEV = SHARED / "squad" / "dev-v1.1.json"
SHARED_TOKENIZER = SHARED / "tokenizers" / "bert-base-cased"

needs_shared = pytest.mark.skipif(not SHARED_DEV.is_file() or not SHARED_TOKENIZER.is_dir(),
                                  reason="../shared (SQuAD dev set, bert-base-cased tokenizer) not present")


@pytest.fixture(scope="session")
def tokenizer():
    from qa_lightning.hf import load_tokenizer

    return load_tokenizer(str(TINY_BERT))


def squad_examples(path: Path) -> dict:
    """Official SQuAD JSON -> columns dict (what datasets.map hands a batched function)."""
    data = json.loads(Path(path).read_text())
    cols = {"id": [], "question": [], "context": [], "answers": []}
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                cols["id"].append(qa["id"])
                cols["question"].append(qa["question"])
                cols["context"].append(para["context"])
                cols["answers"].append({"text": [a["text"] for a in qa["answers"]],
                                        "answer_start": [a["answer_start"] for a in qa["answers"]]})
    return cols


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


# ------------------------------------------------------------------------------ running the CLI
def run_cli(*args, env=None, check=True, timeout=600):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "qa_lightning", *map(str, args)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def debug_args(tmp: Path, *extra):
    return ["--config", "configs/debug.yaml", "--trainer.default_root_dir", tmp,
            "--trainer.logger.init_args.save_dir", tmp, "--data.cache_dir", tmp / "cache",
            "--trainer.enable_progress_bar", "false", *extra]


def versions(tmp: Path) -> list[Path]:
    return sorted((tmp / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("debug_fit")
    run_cli("fit", *debug_args(tmp))
    return tmp, versions(tmp)[-1]


# ------------------------------------------------------------------------------ asking a trained model
def write_questions(path: Path, n_train: int = 20) -> list[dict]:
    """The 40 tiny dev questions and ``n_train`` training questions as JSON lines (id, question, context): the
    input of ``ask`` and a ``predict_file``."""
    records = []
    for source, limit in ((TINY_DEV, None), (TINY_TRAIN, n_train)):
        rows = squad_examples(source)
        for qid, q, c in list(zip(rows["id"], rows["question"], rows["context"]))[:limit]:
            records.append({"id": qid, "question": q, "context": c})
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    return records


@pytest.fixture(scope="session")
def predicted(debug_run, tmp_path_factory):
    """``predict`` with the checkpoint the debug run exported, on 60 questions: a dict with ``questions`` (the
    JSONL path), ``records``, ``predictions`` (predict's), ``export`` (folder) and ``ckpt``."""
    tmp = tmp_path_factory.mktemp("predict_slice")
    _, run = debug_run
    export = run / "export"
    ckpt = json.loads((export / "qa_lightning.json").read_text())["source_checkpoint"]
    questions = tmp / "questions.jsonl"
    records = write_questions(questions)
    run_cli("predict", *debug_args(tmp, "--ckpt_path", ckpt, "--data.predict_file", questions))
    preds = json.loads((versions(tmp)[-1] / "predict" / "predictions.json").read_text())
    return {"questions": questions, "records": records, "predictions": preds, "export": export, "ckpt": ckpt,
            "tmp": tmp}
