"""SquadDataModule: the contract, caching, loaders, and clear errors for bad input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from qa_lightning import SquadDataModule
from qa_lightning.data.batching import QACollator
from qa_lightning.data.position import TrainingPosition
from qa_lightning.errors import QAInputError
from conftest import SHARED_DEV, SHARED_TOKENIZER, TINY_BERT, TINY_DEV, TINY_TRAIN, needs_shared


def make_dm(cache_dir, **kw):
    args = dict(model_name_or_path=str(TINY_BERT), train_file=str(TINY_TRAIN), validation_file=str(TINY_DEV),
                max_length=128, stride=32, cache_dir=cache_dir, num_workers=0)
    args.update(kw)
    return SquadDataModule(**args)


def test_contract_and_columns(cache_dir):
    dm = make_dm(cache_dir)
    dm.prepare_data()
    dm.setup("fit")
    train, val = dm.features["train"], dm.features["validation"]
    for col in ("input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"):
        assert col in train.column_names
    for col in ("input_ids", "example_id", "offset_mapping"):
        assert col in val.column_names
    assert len(dm.examples["validation"]) == 40 and len(val) > 40
    row = val[0]
    assert any(o is None for o in row["offset_mapping"]) and any(o is not None for o in row["offset_mapping"])
    assert max(len(x) for x in train["input_ids"]) <= 128
    ev = dm.eval_set("validation")
    assert ev.offsets.shape[0] == len(val) and (ev.feature_to_example >= 0).all()
    # The arrow fast path agrees with the Python lists.
    for i in (0, len(val) - 1):
        py = [(-1, -1) if o is None else tuple(o) for o in val[i]["offset_mapping"]]
        assert [tuple(x) for x in ev.offsets[i, : len(py)].tolist()] == py


def test_second_run_hits_cache(cache_dir, monkeypatch):
    dm = make_dm(cache_dir)
    dm.prepare_data()
    assert dm.splits.status == {"train": "built", "validation": "built"}
    import qa_lightning.data.features as data_mod

    def boom(*a, **k):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(data_mod, "prepare_train_features", boom)
    monkeypatch.setattr(data_mod, "prepare_validation_features", boom)
    dm2 = make_dm(cache_dir)
    dm2.prepare_data()
    dm2.setup("fit")
    assert dm2.splits.status == {"train": "hit", "validation": "hit"}
    # A different window size is a different cache entry.
    dm3 = make_dm(cache_dir, stride=16)
    with pytest.raises(AssertionError, match="tokenized again"):
        dm3.prepare_data()


def test_max_samples_and_loaders(cache_dir):
    dm = make_dm(cache_dir, max_train_samples=20, max_eval_samples=10, batch_size=4)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.examples["validation"]) == 10
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4 and batch["input_ids"].shape[1] % 8 == 0
    assert set(batch) >= {"input_ids", "attention_mask", "start_positions", "end_positions", "feature_index"}
    seen = np.concatenate([b["feature_index"].numpy() for b in dm.val_dataloader()])
    assert sorted(seen.tolist()) == list(range(len(dm.features["validation"])))


def test_pad_to_max_length_reproduces_reference_padding(cache_dir):
    dm = make_dm(cache_dir, pad_to_max_length=True)
    dm.prepare_data()
    dm.setup("fit")
    assert {len(x) for x in dm.features["train"]["input_ids"][:20]} == {128}


@pytest.mark.parametrize("kind", ["missing", "malformed", "no_data", "empty_question"])
def test_bad_files_give_one_line_errors(tmp_path, cache_dir, kind):
    path = tmp_path / "bad.json"
    if kind == "malformed":
        path.write_text('{"data": [\n  {"paragraphs": [}\n]}')
    elif kind == "no_data":
        path.write_text(json.dumps({"version": "1.1"}))
    elif kind == "empty_question":
        path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "Some text.", "qas": [
            {"id": "q1", "question": "  ", "answers": [{"text": "Some", "answer_start": 0}]}]}]}]}))
    if kind == "missing":
        with pytest.raises(QAInputError, match="no such file") as err:
            make_dm(cache_dir, validation_file=str(path))
    else:
        dm = make_dm(cache_dir, validation_file=str(path))
        with pytest.raises(QAInputError) as err:
            dm.prepare_data()
    msg = str(err.value)
    assert "\n" not in msg and "bad.json" in msg
    if kind == "malformed":
        assert "line 2" in msg
    if kind == "empty_question":
        assert "qas[0]" in msg and "empty" in msg


def test_stride_not_smaller_than_max_length(cache_dir):
    with pytest.raises(QAInputError, match="stride"):
        make_dm(cache_dir, max_length=128, stride=128)


def test_slow_tokenizer_is_refused(tmp_path, cache_dir):
    """ByT5's tokenizer is pure Python in every transformers version: no offsets, so a clear refusal."""
    from transformers import ByT5Tokenizer

    ByT5Tokenizer().save_pretrained(tmp_path / "byt5")
    dm = make_dm(cache_dir, model_name_or_path=str(tmp_path / "byt5"))
    with pytest.raises(QAInputError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert "not a fast tokenizer" in msg and "offset" in msg and "\n" not in msg


@needs_shared
def test_full_dev_validation_feature_count(cache_dir):
    dm = SquadDataModule(model_name_or_path=str(SHARED_TOKENIZER), train_file=str(SHARED_DEV),
                         validation_file=str(SHARED_DEV), max_length=384, stride=128, cache_dir=cache_dir)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.examples["validation"]) == 10570
    assert len(dm.features["validation"]) == 10822
    assert len(dm.features["train"]) == 10822
    # Through the whole data path (file reading, map, cache), training features equal the reference recipe's.
    from reference import reference_train_features
    from conftest import squad_examples

    ref = reference_train_features(squad_examples(SHARED_DEV), dm.tokenizer, 384, 128)
    pad = dm.tokenizer.pad_token_id
    ours = dm.features["train"]
    assert ours["start_positions"] == list(ref["start_positions"])
    assert ours["end_positions"] == list(ref["end_positions"])
    for i, (a, b) in enumerate(zip(ours["input_ids"], ref["input_ids"])):
        n = max(k for k, t in enumerate(b) if t != pad) + 1  # the reference padded to 384
        assert a == b[:n], f"feature {i}"


def test_the_report_names_this_runs_data_file_not_the_cache_builders(cache_dir, tmp_path):
    """The feature cache is shared by content: a second run with the same bytes under another path hits it, and its
    report (printed, and the model card's data sizes) names its own file."""
    first = make_dm(cache_dir)
    first.prepare_data()
    first.setup("fit")
    copy = tmp_path / "mine" / "train.json"
    copy.parent.mkdir()
    copy.write_bytes(TINY_TRAIN.read_bytes())
    second = make_dm(cache_dir, train_file=str(copy))
    second.prepare_data()
    second.setup("fit")
    assert second.splits.status["train"] == "hit"
    assert first.reports["train"].startswith(f"{TINY_TRAIN}: 127 examples")
    assert second.reports["train"].startswith(f"{copy}: 127 examples") and str(TINY_TRAIN) not in second.reports["train"]


def test_the_order_seed_follows_seed_everything_unless_given(cache_dir, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")  # what seed_everything(7) (--seed_everything 7) sets
    assert make_dm(cache_dir).seed == 7
    assert make_dm(cache_dir, seed=42).seed == 42  # --data.seed given: it wins
    monkeypatch.delenv("PL_GLOBAL_SEED")
    assert make_dm(cache_dir).seed == 42  # an unseeded run: the default order


def test_the_resume_position_skips_the_batches_done_in_its_epoch_once():
    position = TrainingPosition(identity=lambda: {})
    assert position.state(None, 4) == {}  # outside fit nothing is saved
    assert position.restore({"epoch": 1, "batches_done": 3, "batch_size": 4, "world_size": 2}, None) is None
    assert position.skip(0) == 0 and position.skip(1) == 3 * 4 * 2 and position.skip(1) == 0


def test_the_collator_of_a_tokenizer_pads_with_its_pad_token_on_its_side():
    no_pad_left = SimpleNamespace(pad_token_id=None, padding_side="left")
    batch = QACollator.for_tokenizer(no_pad_left, pad_to_multiple_of=4)([{"input_ids": [5, 6, 7]}, {"input_ids": [5]}])
    assert batch["input_ids"].tolist() == [[0, 5, 6, 7], [0, 0, 0, 5]] and batch["pad_left"].tolist() == [1, 3]
    right = QACollator.for_tokenizer(SimpleNamespace(pad_token_id=9, padding_side="right"), pad_to_length=3)
    assert right([{"input_ids": [5]}])["input_ids"].tolist() == [[5, 9, 9]]
