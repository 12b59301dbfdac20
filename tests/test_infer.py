"""The Python API (qa_lightning/infer.py): predict's answers exactly, recorded settings, long contexts, SQuAD v2,
no Lightning for an export folder, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from qa_lightning.errors import QAInputError
from qa_lightning.export import export_checkpoint
from qa_lightning.hf import build_model
from qa_lightning.infer import QAModel
from conftest import ROOT, TINY_BERT, TINY_DEV, debug_args, run_cli, squad_examples, versions

DEV = squad_examples(TINY_DEV)


def test_recorded_settings_are_the_defaults_and_can_be_overridden(tiny_export):
    qa = QAModel.from_pretrained(tiny_export)
    assert qa.settings["max_length"] == 128 and qa.settings["stride"] == 32
    assert qa.settings["batch_size"] == 16  # the evaluation batch: 4 x the training batch
    assert qa.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert QAModel.from_pretrained(tiny_export, device="cpu").device.type == "cpu"
    assert QAModel.from_pretrained(tiny_export, max_length=64, stride=16).settings["max_length"] == 64
    with pytest.raises(QAInputError, match="unknown setting"):
        QAModel.from_pretrained(tiny_export, max_lenght=64)


def test_answers_are_slices_of_the_context_best_first(tiny_export):
    qa = QAModel.from_pretrained(tiny_export)
    q, c = DEV["question"][0], DEV["context"][0]
    best = qa.answer(q, c)
    top = qa.answer(q, c, top_k=3)
    assert best == top[0] and len(top) == 3
    assert all(a.text == c[a.start:a.end] and a.text for a in top)
    assert [a.score for a in top] == sorted((a.score for a in top), reverse=True) and 0 < best.score <= 1
    assert best.no_answer is None  # a SQuAD v1 model has no "no answer"
    many = qa.answer_many([{"question": q, "context": c} for q, c in zip(DEV["question"], DEV["context"])])
    assert many[0] == best and len(many) == 40


def test_a_200000_character_context_is_answered_with_sliding_windows(tiny_export):
    qa = QAModel.from_pretrained(tiny_export)
    context = ""
    i = 0
    while len(context) < 200_000:
        context += DEV["context"][i % len(DEV["context"])] + "\n\n"
        i += 1
    best = qa.answer("Which team won Super Bowl 50?", context)
    assert len(context) >= 200_000 and best.text and best.text == context[best.start:best.end]
    # The same answer whether the long context comes alone or in a batch with a short one.
    pair = qa.answer_many([{"question": "Which team won Super Bowl 50?", "context": context},
                           {"question": DEV["question"][0], "context": DEV["context"][0]}])
    assert pair[0].text == best.text and pair[1] == qa.answer(DEV["question"][0], DEV["context"][0])


def test_v2_settings_apply_the_null_rule(tiny_export):
    q, c = DEV["question"][0], DEV["context"][0]
    never = QAModel.from_pretrained(tiny_export, version_2_with_negative=True, null_score_diff_threshold=1e9)
    always = QAModel.from_pretrained(tiny_export, version_2_with_negative=True, null_score_diff_threshold=-1e9)
    span, null = never.answer(q, c, top_k=2), always.answer(q, c, top_k=2)
    assert span[0].no_answer is False and span[0].text and span[0].null_odds == null[0].null_odds
    assert null[0].no_answer is True and null[0].text == "" and null[0].start is None and 0 < null[0].score < 1
    assert null[1].text == span[0].text and null[0].threshold == -1e9


def test_loading_an_export_folder_does_not_import_lightning(tiny_export):
    code = ("import sys; from qa_lightning.infer import QAModel; qa = QAModel.from_pretrained(sys.argv[1]); "
            "print(qa.answer('Who?', 'Bob went home.').text); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))")
    out = subprocess.run([sys.executable, "-c", code, tiny_export], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=True).stdout.splitlines()
    assert out[-1] == "[]"


def test_bad_models_and_questions_are_one_clear_error(tiny_export, tmp_path):
    with pytest.raises(QAInputError, match="no such model folder or checkpoint"):
        QAModel.from_pretrained(str(tmp_path / "missing"))
    base = tmp_path / "base"
    from transformers import AutoModel

    AutoModel.from_config(build_model(str(TINY_BERT), pretrained=False).config).save_pretrained(base)
    with pytest.raises(QAInputError, match="not a question-answering model"):
        QAModel.from_pretrained(str(base))
    with pytest.raises(QAInputError, match="not a model folder"):
        QAModel.from_pretrained(str(tmp_path))
    (tmp_path / "x.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(QAInputError, match="x.ckpt: not a PyTorch checkpoint"):  # resume.read_checkpoint's words
        QAModel.from_pretrained(str(tmp_path / "x.ckpt"))
    qa = QAModel.from_pretrained(tiny_export)
    with pytest.raises(QAInputError, match="'question' is empty"):
        qa.answer("  ", "Bob went home.")
    with pytest.raises(QAInputError, match="record 7: 'context' is missing"):
        qa.answer_many([{"id": 7, "question": "Who?"}])


@pytest.mark.slow
def test_api_answers_exactly_like_predict_from_export_and_checkpoint(predicted):
    records, preds = predicted["records"], predicted["predictions"]
    for source in (predicted["export"], predicted["ckpt"]):
        answers = QAModel.from_pretrained(str(source)).answer_many(records)
        assert {r["id"]: a.text for r, a in zip(records, answers)} == preds
        assert all(a.text == r["context"][a.start:a.end] for r, a in zip(records, answers) if a.text)


@pytest.mark.slow
def test_v2_model_answers_like_predict_v2(predicted, tmp_path):
    # A v2 model: the checkpoint's data module says version_2_with_negative (as after `fit --data.version_2_...`).
    ckpt = torch.load(predicted["ckpt"], map_location="cpu", weights_only=False)
    ckpt["datamodule_hyper_parameters"]["version_2_with_negative"] = True
    v2_ckpt = tmp_path / "v2.ckpt"
    torch.save(ckpt, v2_ckpt)
    run_cli("predict", *debug_args(tmp_path, "--ckpt_path", v2_ckpt, "--data.predict_file", predicted["questions"],
                                   "--data.version_2_with_negative", "true"))
    out = versions(tmp_path)[-1] / "predict"
    preds = json.loads((out / "predictions.json").read_text())
    odds = json.loads((out / "null_odds.json").read_text())
    export = export_checkpoint(str(v2_ckpt), str(tmp_path / "export"))
    assert json.loads((tmp_path / "export" / "qa_lightning.json").read_text())["version_2_with_negative"] is True
    for source in (str(v2_ckpt), export):
        answers = QAModel.from_pretrained(source).answer_many(predicted["records"])
        ids = [r["id"] for r in predicted["records"]]
        assert {i: a.text for i, a in zip(ids, answers)} == preds
        assert all(a.no_answer == (odds[i] > 0.0) and a.threshold == 0.0 for i, a in zip(ids, answers))
        assert all(a.null_odds == pytest.approx(odds[i], abs=1e-4) for i, a in zip(ids, answers))
    # With the median null odds as threshold both outcomes occur: "" past it, predict's best span below it.
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    median = sorted(odds.values())[len(odds) // 2]
    mixed = QAModel.from_pretrained(export, null_score_diff_threshold=median).answer_many(predicted["records"])
    assert {i: a.text for i, a in zip(ids, mixed)} == {i: "" if odds[i] > median else nbest[i][0]["text"] for i in ids}
    assert 0 < sum(a.no_answer for a in mixed) < len(mixed)
