"""features.py against the reference recipe, feature for feature (fixture slice always; full dev set with ../shared);
SQuAD v2 questions without an answer labelled CLS."""

from __future__ import annotations

import warnings

import pytest

from qa_lightning.data.features import (check_window_args, cls_positions, cls_token_id, label_window,
                                   prepare_train_features, prepare_validation_features, question_budget)
from reference import reference_train_features, reference_validation_features
from conftest import (SHARED_DEV, SHARED_TOKENIZER, TINY_DEV, TINY_TRAIN, needs_shared, squad_examples,
                      synthetic_v2)


def _unpadded(ids, pad_id):
    ids = list(ids)
    while ids and ids[-1] == pad_id:
        ids.pop()
    return ids


def assert_train_parity(examples, tok, max_length, stride):
    ours = prepare_train_features(examples, tok, max_length, stride)
    ref = reference_train_features(examples, tok, max_length, stride)
    assert len(ours["input_ids"]) == len(ref["input_ids"])
    for i, (a, b) in enumerate(zip(ours["input_ids"], ref["input_ids"])):
        assert list(a) == _unpadded(b, tok.pad_token_id), f"input_ids differ at feature {i}"
    assert ours["start_positions"] == list(ref["start_positions"])
    assert ours["end_positions"] == list(ref["end_positions"])
    return ours


@pytest.mark.parametrize("max_length,stride", [(384, 128), (128, 32), (64, 16)])
def test_train_features_match_reference_on_fixture(tokenizer, max_length, stride):
    examples = squad_examples(TINY_TRAIN)
    ours = assert_train_parity(examples, tokenizer, max_length, stride)
    assert len(ours["input_ids"]) > len(examples["id"])  # the slice has multi-window examples
    # Some windows miss the answer (labelled CLS = index 0 for BERT), others hold it.
    assert 0 in ours["start_positions"] and max(ours["start_positions"]) > 0


def test_train_labels_decode_to_answer(tokenizer):
    examples = squad_examples(TINY_TRAIN)
    feats = prepare_train_features(examples, tokenizer, 128, 32)
    hits = 0
    for ids, s, e in zip(feats["input_ids"], feats["start_positions"], feats["end_positions"]):
        if s:
            assert e >= s
            hits += 1
    assert hits > 100


@pytest.mark.parametrize("max_length,stride", [(384, 128), (96, 24)])
def test_validation_features_match_reference_on_fixture(tokenizer, max_length, stride):
    examples = squad_examples(TINY_DEV)
    ours = prepare_validation_features(examples, tokenizer, max_length, stride)
    ref = reference_validation_features(examples, tokenizer, max_length, stride)
    assert ours["example_id"] == ref["example_id"]
    for a, b in zip(ours["offset_mapping"], ref["offset_mapping"]):
        assert [None if o is None else tuple(o) for o in a] == \
               [None if o is None else tuple(o) for o in b[: len(a)]]
        assert all(o is None for o in b[len(a):])  # the reference's padding is outside the context too


def test_label_window_matches_loops_on_non_monotonic_offsets():
    # Offsets that go backwards (possible with odd normalisers) must still give the loops' answer.
    offsets = [(0, 0), (0, 3), (4, 6), (2, 5), (7, 9), (10, 12), (0, 0)]

    def loops(start_char, end_char):
        cs, ce = 1, 5
        if offsets[cs][0] > start_char or offsets[ce][1] < end_char:
            return 0, 0
        idx = cs
        while idx <= ce and offsets[idx][0] <= start_char:
            idx += 1
        s = idx - 1
        idx = ce
        while idx >= cs and offsets[idx][1] >= end_char:
            idx -= 1
        return s, idx + 1

    for sc in range(0, 12):
        for ec in range(sc + 1, 13):
            assert label_window(offsets, 1, 5, sc, ec, 0) == loops(sc, ec), (sc, ec)


@pytest.mark.parametrize("max_length,stride", [(384, 384), (384, 500), (4, 1)])
def test_bad_window_sizes(max_length, stride):
    with pytest.raises(ValueError, match="stride|max_length"):
        check_window_args(max_length, stride)


@needs_shared
def test_full_dev_set_train_parity_and_counts():
    """dev-v1.1.json used as a training file: every feature equals the reference's (10,822 features)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(SHARED_TOKENIZER))
    examples = squad_examples(SHARED_DEV)
    assert len(examples["id"]) == 10570
    ours = assert_train_parity(examples, tok, 384, 128)
    assert len(ours["input_ids"]) == 10822


def test_one_cls_rule_for_rows_and_datasets():
    """Training labels, evaluation and QAModel share cls_positions: rows and (views of) Datasets alike."""
    import datasets

    rows = [[5, 1, 2], [3, 4, 1], [7, 8]]
    assert cls_positions(rows, 1).tolist() == [1, 2, 0]  # first CLS; 0 when a feature has none
    view = datasets.Dataset.from_dict({"input_ids": rows}).select([2, 0, 1])
    assert cls_positions(view, 1).tolist() == [0, 1, 2]
    assert cls_positions(rows, None).tolist() == [0, 0, 0]

    class NoCls:  # a tokenizer with BOS but no CLS: windows without the answer point at BOS
        cls_token_id, bos_token_id = None, 7

    assert cls_token_id(NoCls) == 7


@pytest.mark.parametrize("words", [600, 100])  # 600: the tokenizer refuses it whole; 100: it would not
def test_a_long_question_does_not_multiply_the_windows(tokenizer, words):
    """192/64 (the debug config): a long question used to leave the context 65 - 89 tokens per window, so windows
    advanced by 1 - 25 tokens (174 windows for one example); cut to question_budget, they advance by the stride."""
    examples = squad_examples(TINY_DEV)
    for k in examples:
        examples[k] = examples[k][:1]
    short = prepare_validation_features(examples, tokenizer, 192, 64)
    examples["question"] = [" ".join(["why"] * words)]
    with pytest.warns(UserWarning, match=r"1 question\(s\) longer than 62 tokens were truncated to their first 62 "
                                         r"tokens, so that windows of --data.max_length 192 still advance by about "
                                         r"--data.stride 64"):
        long = prepare_validation_features(examples, tokenizer, 192, 64)
    assert question_budget(tokenizer, 192, 64) == 62 and question_budget(tokenizer, 384, 128) == 125
    assert len(short["input_ids"]) == 2 and len(long["input_ids"]) <= 3
    starts = [next(o[0] for o in offsets if o is not None) for offsets in long["offset_mapping"]]
    ids = tokenizer(examples["context"][0], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    token_at = {start: i for i, (start, _) in enumerate(ids)}
    assert min(token_at[b] - token_at[a] for a, b in zip(starts, starts[1:])) >= 60  # about the stride of 64
    train = prepare_train_features({**examples, "answers": examples["answers"]}, tokenizer, 192, 64)
    assert len(train["input_ids"]) == len(long["input_ids"])


def test_unanswerable_questions_are_labelled_cls(tokenizer, tmp_path):
    data = synthetic_v2(tmp_path / "v2.json")
    cols = {True: {"question": [], "context": [], "answers": []}, False: {"question": [], "context": [], "answers": []}}
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                side = cols[bool(qa["answers"])]
                side["question"].append(qa["question"])
                side["context"].append(para["context"])
                side["answers"].append({"text": [x["text"] for x in qa["answers"]],
                                        "answer_start": [x["answer_start"] for x in qa["answers"]]})
    assert len(cols[False]["question"]) >= 10
    impossible = prepare_train_features(cols[False], tokenizer, 128, 32)
    assert set(impossible["start_positions"]) == {0} and set(impossible["end_positions"]) == {0}  # CLS of BERT
    possible = prepare_train_features(cols[True], tokenizer, 128, 32)
    assert sum(s > 0 for s in possible["start_positions"]) >= 20


def test_overlong_question_is_truncated_with_a_warning(tokenizer):
    examples = squad_examples(TINY_DEV)
    for k in ("id", "question", "context", "answers"):
        examples[k] = examples[k][:3]
    examples["question"][1] = " ".join(["why"] * 300)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = prepare_validation_features(examples, tokenizer, 64, 16)
    assert any("truncated" in str(w.message) for w in caught)
    assert set(out["example_id"]) == set(examples["id"])
    assert max(len(x) for x in out["input_ids"]) <= 64
