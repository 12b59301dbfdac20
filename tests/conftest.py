"""Shared fixtures and helpers of the test suite (test modules import helpers from here, never from each other).

- paths: the tiny fixtures (``tests/fixtures``), ``../shared`` (SQuAD dev set, bert-base-cased; ``needs_shared``
  skips cleanly when absent); ``unpadded_supported`` (--model.unpadded works with this transformers);
- data: ``squad_examples`` (SQuAD JSON -> columns), ``write_questions`` (JSON lines for ``ask``/``predict``),
  ``synthetic_v2`` (the tiny dev set with unanswerable questions);
- the command line: ``run_cli`` (from the repository, ``debug_args``), ``run_elsewhere`` (from another directory,
  ``abs_args``), ``versions`` (run folders), ``one_error_line`` (exit 2, one ``error:`` line, no traceback);
- fixtures: ``tokenizer``, ``cache_dir``, ``debug_run`` (one ``fit`` of configs/debug.yaml per session),
  ``predicted`` (``predict`` with its export), ``tiny_export`` (an untrained tiny model exported, no training).

Other helper modules: ``reference.py`` (the recipe's code and the official SQuAD scripts: the oracle) and
``tiny_models.py`` (tokenizers and tiny models of ten architectures, built locally).

Run: ``make test`` (everything) or ``make test-fast`` (skips tests marked slow).
"""

from __future__ import annotations

import json
import os
import random
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
CONFIG = ROOT / "configs" / "debug.yaml"
SHARED = Path(os.environ.get("QA_LIGHTNING_SHARED", ROOT.parent / "shared"))
SHARED_DEV = SHARED / "squad" / "dev-v1.1.json"
SHARED_TOKENIZER = SHARED / "tokenizers" / "bert-base-cased"

needs_shared = pytest.mark.skipif(not SHARED_DEV.is_file() or not SHARED_TOKENIZER.is_dir(),
                                  reason="../shared (SQuAD dev set, bert-base-cased tokenizer) not present")


def unpadded_supported() -> bool:
    """Whether --model.unpadded works here: BERT's attention goes through transformers' registry (transformers >= 5);
    older versions refuse the option in one line."""
    from transformers.models.bert import modeling_bert

    return hasattr(modeling_bert, "ALL_ATTENTION_FUNCTIONS")


# ------------------------------------------------------------------------------ data
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


def synthetic_v2(path: Path) -> dict:
    """The tiny dev set as SQuAD v2, written to ``path``: every other question is moved to a paragraph of another
    article, unanswerable there (16 of 40)."""
    data = json.loads(TINY_DEV.read_text())
    paragraphs = [(a, p) for a, art in enumerate(data["data"]) for p in art["paragraphs"]]
    rng = random.Random(0)
    moved = []
    for a, para in paragraphs:
        keep = []
        for i, qa in enumerate(para["qas"]):
            if i % 2:
                moved.append((a, {"id": qa["id"], "question": qa["question"], "answers": [], "is_impossible": True}))
            else:
                keep.append({**qa, "is_impossible": False})
        para["qas"] = keep
    for a, qa in moved:
        _, para = rng.choice([(b, p) for b, p in paragraphs if b != a])
        para["qas"].append(qa)
    data["version"] = "v2.0"
    path.write_text(json.dumps(data))
    return data


# ------------------------------------------------------------------------------ running the CLI
def run_cli(*args, env=None, check=True, timeout=600):
    """``python -m qa_lightning ARGS`` from the repository root (relative paths as in configs/debug.yaml)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "qa_lightning", *map(str, args)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def debug_args(tmp: Path, *extra):
    """configs/debug.yaml with every output (run folders, logs, feature cache) under ``tmp``."""
    return ["--config", "configs/debug.yaml", "--trainer.default_root_dir", tmp,
            "--trainer.logger.init_args.save_dir", tmp, "--data.cache_dir", tmp / "cache",
            "--trainer.enable_progress_bar", "false", *extra]


def run_elsewhere(cwd: Path, *args, check=True, timeout=600, popen=False):
    """The CLI as a user runs it from another directory: absolute config and files, no logger save_dir."""
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "qa_lightning", *map(str, args)]
    if popen:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def abs_args(root: Path, cache: Path, *extra, model=TINY_BERT):
    """configs/debug.yaml by absolute paths (for :func:`run_elsewhere`), outputs under ``root``."""
    model_arg = ["--model.model_name_or_path", model] if model else []
    return ["--config", CONFIG, *model_arg, "--data.train_file", TINY_TRAIN, "--data.validation_file", TINY_DEV,
            "--trainer.default_root_dir", root, "--data.cache_dir", cache, "--trainer.enable_progress_bar", "false",
            *extra]


def versions(tmp: Path) -> list[Path]:
    """The run folders ``tmp/lightning_logs/version_N``, oldest first."""
    return sorted((tmp / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def one_error_line(proc) -> str:
    """Exit status 2, no traceback, one ``error:`` line and it is the last line: returns it."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert [ln for ln in lines if ln.startswith("error:")] == lines[-1:], proc.stderr[-3000:]
    return lines[-1]


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def tokenizer():
    from qa_lightning.hf import load_tokenizer

    return load_tokenizer(str(TINY_BERT))


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory):
    """``fit --config configs/debug.yaml`` once per session: (its tmp folder, its run folder)."""
    tmp = tmp_path_factory.mktemp("debug_fit")
    run_cli("fit", *debug_args(tmp))
    return tmp, versions(tmp)[-1]


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


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A randomly initialised tiny BERT with a QA head, exported with recorded settings (no training needed)."""
    import torch

    from qa_lightning.export import run_metadata, save_hf_directory
    from qa_lightning.hf import build_model, load_tokenizer

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny") / "export"
    model = build_model(str(TINY_BERT), pretrained=False).eval()
    meta = run_metadata({"model_name_or_path": str(TINY_BERT), "n_best": 20, "max_answer_length": 30},
                        {"max_length": 128, "stride": 32, "batch_size": 4})
    return save_hf_directory(model, load_tokenizer(str(TINY_BERT)), str(out), meta)
