"""Every architecture's QA head loads and answers: tiny random models of ten architectures, each with a tokenizer
of its real (fast) class trained locally (``tiny_models.py``), end to end through the command line:

- ``fit`` (a few steps, one validation) with its export of the best checkpoint;
- ``validate --ckpt_path`` of that checkpoint gives the recipe's answers (``reference.py``: windows padded to
  max_length, the course's n-best loop) for the export's weights;
- ``ask`` on the export and on the checkpoint answers exactly as ``validate``;
- the training labels are the recipe's and mark the gold answer's tokens.

An architecture the installed transformers lacks (ModernBERT before 4.48) is skipped, saying so.
"""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch
import transformers

from qa_lightning.__main__ import main as entry
from qa_lightning.cli import main as cli_main
from qa_lightning.data.features import prepare_train_features, prepare_validation_features
from qa_lightning.hf import load_tokenizer
from conftest import TINY_DEV, TINY_TRAIN, squad_examples
from reference import reference_decode, reference_train_features, reference_validation_features
from tiny_models import ARCHS, available, tiny_model_folder

MAX_LENGTH, STRIDE, EVAL = 128, 32, 20  # windows; evaluation questions (the first 20 of the tiny dev set)


def run_args(folder, root, *extra) -> list[str]:
    args = ["--model.model_name_or_path", folder, "--model.pretrained", "false", "--model.learning_rate", "1e-3",
            "--data.train_file", TINY_TRAIN, "--data.validation_file", TINY_DEV, "--data.max_length", MAX_LENGTH,
            "--data.stride", STRIDE, "--data.max_eval_samples", EVAL, "--data.cache_dir", root.parent / "cache",
            "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.default_root_dir", root,
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.num_sanity_val_steps", "0", "--trainer.precision", "32-true", *extra]
    return [str(a) for a in args]


def recipe_answers(export, examples: dict) -> dict:
    """The recipe's predictions for the exported model: its features padded to max_length, one forward pass, the
    course's decoding loop. The logits of padding positions are set to -1e9 first: a trained model gives them no
    weight, but an untrained one's would take n-best slots in the recipe's loop, which ranks every position of the
    padded window; ours ranks the feature's own tokens only (padding is not part of a feature)."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(export)
    model = AutoModelForQuestionAnswering.from_pretrained(export).eval()
    feats = reference_validation_features(examples, tok, MAX_LENGTH, STRIDE)
    with torch.no_grad():
        out = model(**{k: torch.tensor(feats[k]) for k in tok.model_input_names if k in feats})
    padding = torch.tensor(feats["attention_mask"]) == 0  # (F, max_length)
    start, end = (logits.masked_fill(padding, -1e9).numpy() for logits in (out.start_logits, out.end_logits))
    features = [{"example_id": e, "offset_mapping": o} for e, o in zip(feats["example_id"], feats["offset_mapping"])]
    contexts = [{"id": i, "context": c} for i, c in zip(examples["id"], examples["context"])]
    return reference_decode(start, end, features, contexts)


def ask_answers(model, examples: dict, monkeypatch, capsys) -> dict:
    """``python -m qa_lightning ask --model MODEL < questions.jsonl`` in this process: {id: answer}."""
    lines = [json.dumps({"id": i, "question": q, "context": c})
             for i, q, c in zip(examples["id"], examples["question"], examples["context"])]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    capsys.readouterr()
    entry(["ask", "--model", str(model)])
    return {row["id"]: row["answer"] for row in map(json.loads, capsys.readouterr().out.splitlines())}


def label_check(tok) -> tuple[int, int]:
    """Training labels equal the recipe's; every answered window's labels are the first and last token touching
    the gold answer. Returns (answered windows, windows whose labelled text is exactly the gold text)."""
    examples = squad_examples(TINY_TRAIN)
    ours = prepare_train_features(examples, tok, MAX_LENGTH, STRIDE)
    ref = reference_train_features(examples, tok, MAX_LENGTH, STRIDE)
    assert ours["start_positions"] == ref["start_positions"] and ours["end_positions"] == ref["end_positions"]
    windows = prepare_validation_features(examples, tok, MAX_LENGTH, STRIDE)  # the same windows, with offsets
    row = {k: i for i, k in enumerate(examples["id"])}
    answered = exact = 0
    for i, (s, e) in enumerate(zip(ours["start_positions"], ours["end_positions"])):
        if s == 0 and e == 0:  # CLS: the answer is not wholly in this window
            continue
        offsets, ex = windows["offset_mapping"][i], row[windows["example_id"][i]]
        context, gold = examples["context"][ex], examples["answers"][ex]
        a0 = gold["answer_start"][0]
        a1 = a0 + len(gold["text"][0])
        assert offsets[s] is not None and offsets[e] is not None and s <= e
        assert offsets[s][0] <= a0 < offsets[s][1], (i, s, offsets[s], a0)
        assert offsets[e][0] < a1 <= offsets[e][1], (i, e, offsets[e], a1)
        answered += 1
        exact += context[offsets[s][0]:offsets[e][1]].strip() == gold["text"][0]
    return answered, exact


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ARCHS))
def test_architecture_end_to_end(name, tmp_path, monkeypatch, capsys):
    if not available(name):
        pytest.skip(f"transformers {transformers.__version__} has no {ARCHS[name].config}")
    # Parity with the recipe is checked in fp32: untrained tiny models have near-tied spans that bf16 autocast (the
    # automatic precision on CPUs with bf16 instructions) may order differently from the oracle's fp32 pass.
    monkeypatch.setattr("qa_lightning.precision.cpu_bf16_isa", lambda: "")
    folder = tiny_model_folder(name, tmp_path / "models")
    tok = load_tokenizer(str(folder))
    assert isinstance(tok, getattr(transformers, ARCHS[name].tokenizer)) and tok.is_fast  # the real class, loaded
    fit = cli_main(["fit", *run_args(folder, tmp_path / "fit", "--data.max_train_samples", "8",
                                     "--trainer.max_epochs", "1")])
    export = next(cb.exported for cb in fit.trainer.callbacks if getattr(cb, "exported", None))
    best = fit.trainer.checkpoint_callback.best_model_path
    assert best and json.load(open(f"{export}/qa_lightning.json"))["source_checkpoint"] == best
    val = cli_main(["validate", *run_args(folder, tmp_path / "validate", "--ckpt_path", best)])
    preds = json.load(open(f"{val.trainer.log_dir}/predictions.json"))
    dev = {k: v[:EVAL] for k, v in squad_examples(TINY_DEV).items()}
    assert len(preds) == EVAL and preds == recipe_answers(export, dev)
    assert ask_answers(export, dev, monkeypatch, capsys) == preds
    assert ask_answers(best, dev, monkeypatch, capsys) == preds
    answered, exact = label_check(tok)
    print(f"{name}: {type(tok).__name__}, {len(preds)} answers = recipe = ask; labels = recipe's, "
          f"{answered} answered windows, labelled text == gold in {exact}")


@pytest.mark.parametrize("name", ["deberta-v2", "bigbird"])
def test_dropout_is_kept_when_sdpa_falls_back_to_eager(name, tmp_path):
    """An architecture without SDPA is built again with its default attention, with the --model.dropout asked for."""
    from qa_lightning.hf import build_model

    folder = str(tiny_model_folder(name, tmp_path))
    model = build_model(folder, pretrained=False, dropout=0.05)
    assert model.config._attn_implementation == "eager"
    assert model.config.hidden_dropout_prob == 0.05 and model.config.attention_probs_dropout_prob == 0.05
