"""Length buckets (data/buckets.py, QACollator(buckets=...), --data.length_buckets): few shapes, labels unchanged."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from qa_lightning.data.batching import QACollator
from qa_lightning.data.buckets import auto_buckets, buckets_for, padding_cost, parse_bucket_spec
from qa_lightning.data.features import prepare_train_features, prepare_validation_features
from qa_lightning.errors import QAInputError
from qa_lightning.evaluation.decoding import decode_answers
from qa_lightning.evaluation.evalset import offsets_array
from qa_lightning.evaluation.gather import align_logits
from conftest import TINY_BERT, TINY_DEV, TINY_TRAIN, squad_examples
from tiny_models import build_tokenizer


def test_auto_buckets_are_the_least_padding_choice():
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(40, 200, 300), rng.integers(300, 385, 60)])
    got = auto_buckets(lengths, 3, max_length=384, multiple=32)
    assert got[-1] == 384 and len(got) == 3 and all(b % 32 == 0 for b in got)
    # Brute force over every choice of 2 lower buckets (the top one is fixed at 384).
    cands = range(32, 384, 32)
    best = min(padding_cost(lengths, [a, b, 384]) for a, b in itertools.combinations(cands, 2))
    assert padding_cost(lengths, got) == best
    assert padding_cost(lengths, got) < padding_cost(lengths, [384])
    # More buckets than useful: only as many as reduce the padding.
    assert auto_buckets(np.array([10, 10, 10]), 4, max_length=16, multiple=8) == [16]


def test_bucket_specs():
    assert parse_bucket_spec(None, 384) is None
    assert parse_bucket_spec("auto", 384) == 4 and parse_bucket_spec("auto:6", 384) == 6
    assert parse_bucket_spec([384, 128, 256, 128], 384) == [128, 256, 384]
    assert parse_bucket_spec("128,256,384", 384) == [128, 256, 384]
    for bad in ("fast", "auto:0", [128, 256], [0, 384]):
        with pytest.raises(ValueError):
            parse_bucket_spec(bad, 384)
    assert buckets_for("auto", None, 100, multiple=64)[0] == [128]


@pytest.mark.parametrize("style", ["bert", "xlnet"])
def test_labels_and_decoded_answers_identical_with_and_without_buckets(style, tokenizer):
    tok = tokenizer if style == "bert" else build_tokenizer("xlnet")
    examples = squad_examples(TINY_DEV)
    for k in ("id", "question", "context", "answers"):
        examples[k] = examples[k][:40]
    width = 96
    train = prepare_train_features(examples, tok, width, 24)
    val = prepare_validation_features(examples, tok, width, 24)
    order = np.argsort([len(x) for x in train["input_ids"]], kind="stable")  # length-grouped batches, as in training
    feats = [{k: train[k][i] for k in train} for i in order]
    fine = QACollator(pad_token_id=tok.pad_token_id, padding_side=tok.padding_side)
    coarse = QACollator(pad_token_id=tok.pad_token_id, padding_side=tok.padding_side, buckets=[64, 80, 96])
    index = {k: i for i, k in enumerate(examples["id"])}
    f2e = np.array([index[x] for x in val["example_id"]])
    offsets = offsets_array(val["offset_mapping"], width)
    decoded = {}
    shapes = set()
    for name, collate in (("fine", fine), ("coarse", coarse)):
        starts, ends, s_all, e_all = [], [], [], []
        for lo in range(0, len(feats), 4):  # batches of 4
            batch = collate(feats[lo: lo + 4])
            ids = batch["input_ids"]
            shift = batch.get("pad_left", torch.zeros(len(ids), dtype=torch.long))  # (B,)
            shapes.add((name, ids.shape[1]))
            for i, f in enumerate(feats[lo: lo + 4]):  # the real tokens are the feature's, wherever they sit
                n = len(f["input_ids"])
                assert ids[i, shift[i]: shift[i] + n].tolist() == f["input_ids"]
            starts.append(batch["start_positions"] - shift)
            ends.append(batch["end_positions"] - shift)
            # "perfect" logits at the labels, in padded coordinates, aligned back and decoded
            rows = torch.arange(len(ids))
            s = torch.full(ids.shape, -5.0)
            e = torch.full(ids.shape, -5.0)
            s[rows, batch["start_positions"]] = 10.0
            e[rows, batch["end_positions"]] = 10.0
            s_all.append(align_logits(s, batch["attention_mask"], width, batch.get("pad_left")))
            e_all.append(align_logits(e, batch["attention_mask"], width, batch.get("pad_left")))
        s_np, e_np = torch.cat(s_all).numpy(), torch.cat(e_all).numpy()
        back = np.empty_like(s_np), np.empty_like(e_np)  # undo the sort: row i = feature i
        back[0][order], back[1][order] = s_np, e_np
        decoded[name] = (torch.cat(starts), torch.cat(ends),
                         decode_answers(back[0], back[1], offsets, f2e, examples["context"]))
    coarse_shapes = {n for kind, n in shapes if kind == "coarse"}
    assert coarse_shapes <= {64, 80, 96} and len(coarse_shapes) >= 2  # the buckets were used, not one length
    assert {n for kind, n in shapes if kind == "fine"} - coarse_shapes  # and they padded differently
    assert torch.equal(decoded["fine"][0], decoded["coarse"][0])
    assert torch.equal(decoded["fine"][1], decoded["coarse"][1])
    assert decoded["fine"][2] == decoded["coarse"][2]
    assert sum(a != "" for a in decoded["coarse"][2]) >= 15  # answers were decoded, not all empty


def _dm(cache_dir, **kw):
    from qa_lightning import SquadDataModule

    args = dict(model_name_or_path=str(TINY_BERT), train_file=str(TINY_TRAIN), validation_file=str(TINY_DEV),
                max_length=128, stride=32, cache_dir=cache_dir, num_workers=0, batch_size=8)
    args.update(kw)
    return SquadDataModule(**args)


def test_datamodule_auto_buckets_bound_the_shapes(cache_dir):
    dm = _dm(cache_dir, length_buckets="auto", pad_to_multiple_of=16)
    dm.prepare_data()
    dm.setup("fit")
    buckets = dm.length_buckets()
    assert len(buckets) <= 4 and buckets[-1] == 128 and all(b % 16 == 0 for b in buckets)
    train_shapes = {b["input_ids"].shape[1] for b in dm.train_dataloader()}
    val_shapes = {b["input_ids"].shape[1] for b in dm.val_dataloader()}
    assert train_shapes <= set(buckets) and val_shapes <= set(buckets)
    default = _dm(cache_dir)  # default: unchanged, every batch to its longest feature rounded up to 8
    default.prepare_data()
    default.setup("fit")
    assert default.length_buckets() is None
    for b in default.train_dataloader():
        assert b["input_ids"].shape[1] == -(-int(b["attention_mask"].sum(1).max()) // 8) * 8


def test_datamodule_explicit_buckets_and_bad_specs(cache_dir):
    dm = _dm(cache_dir, length_buckets=[64, 128])
    dm.prepare_data()
    dm.setup("fit")
    assert {b["input_ids"].shape[1] for b in dm.train_dataloader()} <= {64, 128}
    with pytest.raises(QAInputError, match="length_buckets.*largest bucket 96 < max_length 128"):
        _dm(cache_dir, length_buckets=[64, 96])
    with pytest.raises(QAInputError, match="length_buckets"):
        _dm(cache_dir, length_buckets="fastest")
