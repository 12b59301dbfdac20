"""Any fast tokenizer: XLNet-style left padding (context first, CLS last) and RoBERTa-style (no token_type_ids).

Both tokenizers are built locally from the bert-base-cased WordPiece model with other post-processors
(``tiny_models.build_tokenizer``). The check goes through the whole chain: labels -> collator (padding, label
shift) -> logits aligned back -> decoded answer. Real architectures' tokenizers: ``test_architectures.py``.
"""

from __future__ import annotations

import shutil

import lightning as L
import numpy as np
import pytest
import torch

from qa_lightning.data.batching import QACollator
from qa_lightning.evaluation.decoding import decode_answers
from qa_lightning.evaluation.evalset import offsets_array
from qa_lightning.evaluation.gather import align_logits
from qa_lightning.data.features import prepare_train_features, prepare_validation_features
from conftest import TINY_BERT, TINY_DEV, TINY_TRAIN, squad_examples
from tiny_models import build_tokenizer


@pytest.mark.parametrize("style", ["xlnet", "roberta"])
def test_labels_survive_padding_and_decode_back_to_the_answer(style):
    tok = build_tokenizer(style)
    examples = squad_examples(TINY_DEV)
    for k in ("id", "question", "context", "answers"):
        examples[k] = examples[k][:20]
    train = prepare_train_features(examples, tok, 96, 24)
    val = prepare_validation_features(examples, tok, 96, 24)
    assert len(train["input_ids"]) == len(val["input_ids"])
    if style == "roberta":
        assert "token_type_ids" not in train
    cls_id = tok.cls_token_id
    feats = [{k: train[k][i] for k in train} for i in range(len(train["input_ids"]))]
    for f in feats:
        if style == "xlnet":
            assert f["input_ids"][-1] == cls_id  # CLS last, not at index 0
    batch = QACollator(pad_token_id=tok.pad_token_id, padding_side=tok.padding_side)(feats)
    ids, starts, ends = batch["input_ids"], batch["start_positions"], batch["end_positions"]
    shift = batch.get("pad_left", torch.zeros(len(feats), dtype=torch.long))  # (B,) padding added on the left
    cls_at = torch.tensor([f["input_ids"].index(cls_id) for f in feats]) + shift
    answered = starts != cls_at
    assert answered.sum() > 10
    for i in range(len(feats)):  # labels still point at the same tokens after padding
        assert ids[i, starts[i]] == feats[i]["input_ids"][starts[i] - shift[i]]
        assert ids[i, ends[i]] == feats[i]["input_ids"][ends[i] - shift[i]]
    # "Perfect" logits at the labels, in padded batch coordinates -> aligned back -> decoded = the gold answer text.
    start_logits = torch.full(ids.shape, -5.0)
    end_logits = torch.full(ids.shape, -5.0)
    rows = torch.arange(len(feats))
    start_logits[rows[answered], starts[answered]] = 10.0
    end_logits[rows[answered], ends[answered]] = 10.0
    width = 96
    s = align_logits(start_logits, batch["attention_mask"], width, batch.get("pad_left")).numpy()
    e = align_logits(end_logits, batch["attention_mask"], width, batch.get("pad_left")).numpy()
    index = {k: i for i, k in enumerate(examples["id"])}
    f2e = np.array([index[x] for x in val["example_id"]])
    answers = decode_answers(s, e, offsets_array(val["offset_mapping"], width), f2e, examples["context"])
    hits = 0
    for ex_i, text in enumerate(answers):
        gold = examples["answers"][ex_i]["text"][0]
        if any(answered[f2e == ex_i].tolist()):
            assert gold in text and len(text) <= len(gold) + 12, (text, gold)
            hits += 1
    assert hits >= 15


def test_left_padding_model_trains_and_evaluates(tmp_path):
    from qa_lightning import QAModule, SquadDataModule

    model_dir = tmp_path / "xlnet-like"
    build_tokenizer("xlnet").save_pretrained(model_dir)
    shutil.copy(TINY_BERT / "config.json", model_dir / "config.json")
    dm = SquadDataModule(model_name_or_path=str(model_dir), train_file=str(TINY_TRAIN), validation_file=str(TINY_DEV),
                         max_length=128, stride=32, batch_size=8, cache_dir=str(tmp_path / "cache"), num_workers=0)
    model = QAModule(model_name_or_path=str(model_dir), pretrained=False)
    trainer = L.Trainer(accelerator="cpu", max_steps=3, default_root_dir=str(tmp_path), logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    trainer.validate(model, datamodule=dm)
    assert dm.tokenizer.padding_side == "left"
    assert len(model.results["validation"].predictions) == 40
    assert (dm.eval_set("validation").cls_index > 0).all()  # CLS found at the end of each feature
