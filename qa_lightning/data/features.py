"""Examples -> model features for extractive QA: the reference recipe's preprocessing, label for label (pure).
The functions take and return a batch of columns, as ``Dataset.map(batched=True)`` hands them over. Features are
stored unpadded (the collator pads each batch). Tokenizers that pad on the left (XLNet) get the context first, and
the CLS index is read from each feature rather than assumed to be 0.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import numpy as np


def check_window_args(max_length: int, stride: int) -> None:
    """Raise ``ValueError`` for window sizes the tokenizer cannot honour."""
    if max_length < 8:
        raise ValueError(f"max_length={max_length} is too small: use at least 8 tokens (the recipe uses 384).")
    if stride < 0 or stride >= max_length:
        raise ValueError(
            f"stride={stride} must be >= 0 and smaller than max_length={max_length} "
            "(it is the overlap between windows; the recipe uses max_length 384, stride 128)."
        )


def question_budget(tokenizer: Any, max_length: int, stride: int) -> int:
    """The most tokens a question keeps, so that windows still advance by about ``stride`` context tokens:
    ``room - stride``, with ``room = max_length - specials - stride`` (125 for the recipe's 384/128), but at least
    ``min(64, room // 2)`` so that a large stride does not cut ordinary questions (SQuAD's longest has 42)."""
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - stride
    return max(room - stride, min(64, room // 2), 1)


def _cap_questions(questions: list, tokenizer: Any, budget: int) -> tuple[list, int]:
    """Questions longer than ``budget`` tokens cut after their ``budget``-th token; returns (questions, how many)."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    out, cut = list(questions), 0
    for i, offsets in enumerate(enc["offset_mapping"]):
        if len(offsets) > budget:
            out[i] = questions[i][:offsets[budget - 1][1]]
            cut += 1
    return out, cut


def _has_long_question(enc, question_id: int, budget: int) -> bool:
    """Whether an example's question (counted in its first window) has more than ``budget`` tokens."""
    sample_map = enc["overflow_to_sample_mapping"]
    return any(enc.sequence_ids(i).count(question_id) > budget
               for i in range(len(sample_map)) if i == 0 or sample_map[i] != sample_map[i - 1])


def _tokenize(examples: dict, tokenizer: Any, max_length: int, stride: int, pad_to_max_length: bool):
    """Tokenize (question, context) pairs into overflowing windows; returns (encoding, context sequence id,
    feature -> example map, offsets), the last two popped from the encoding.

    A question longer than :func:`question_budget` is truncated (with a warning) so that one example never becomes
    hundreds of windows advancing by a token or two; every other question is tokenized as the recipe does."""
    check_window_args(max_length, stride)
    questions = [q.strip() for q in examples["question"]]
    contexts = examples["context"]
    context_first = tokenizer.padding_side == "left"
    kwargs = dict(
        max_length=max_length,
        truncation="only_first" if context_first else "only_second",
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if pad_to_max_length else False,
    )

    def windows(qs):
        return tokenizer(contexts, qs, **kwargs) if context_first else tokenizer(qs, contexts, **kwargs)

    budget = question_budget(tokenizer, max_length, stride)
    try:
        enc = windows(questions)
        long = _has_long_question(enc, 1 if context_first else 0, budget)
    except Exception as err:  # the Rust tokenizer refuses when the question alone overflows the window
        if "truncat" not in str(err).lower() and "overflow" not in str(err).lower():
            raise
        long = True
    if long:
        questions, cut = _cap_questions(questions, tokenizer, budget)
        warnings.warn(f"{cut} question(s) longer than {budget} tokens were truncated to their first {budget} "
                      f"tokens, so that windows of --data.max_length {max_length} still advance by about "
                      f"--data.stride {stride} context tokens (a longer question would turn its example into very "
                      "many windows)")
        enc = windows(questions)
    return enc, (0 if context_first else 1), enc.pop("overflow_to_sample_mapping"), enc.pop("offset_mapping")


def label_window(offsets: Sequence, context_start: int, context_end: int, start_char: int, end_char: int,
                 cls_index: int) -> tuple[int, int]:
    """Token (start, end) of the answer [start_char, end_char) in one window, or (cls, cls) if not wholly inside.

    Same result as the reference loops, for any offsets (no monotonicity assumed): the start is the token before the
    first context token whose start offset passes ``start_char``; the end is the token after the last context token
    (scanning backwards) whose end offset falls short of ``end_char``.
    """
    if offsets[context_start][0] > start_char or offsets[context_end][1] < end_char:
        return cls_index, cls_index
    ctx = np.asarray(offsets[context_start:context_end + 1], dtype=np.int64)  # (C, 2)
    past = ctx[:, 0] > start_char
    start = (int(np.argmax(past)) if past.any() else len(ctx)) - 1 + context_start
    short = ctx[:, 1] < end_char
    end = (len(ctx) - 1 - int(np.argmax(short[::-1])) if short.any() else -1) + 1 + context_start
    return start, end


def cls_token_id(tokenizer: Any) -> Optional[int]:
    """The token whose position labels a window without the answer: CLS, else BOS (None: position 0)."""
    return tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id


def arrow_column(rows, name: str, item_type=None):
    """The ``name`` column of a ``datasets.Dataset`` as one Arrow ``ListArray`` (its buffers: no slow Python objects),
    or a list of rows of ``item_type`` (default int64) items as one."""
    import pyarrow as pa

    if hasattr(rows, "with_format"):  # a datasets.Dataset, select()/shuffle() views included
        return rows.with_format("arrow")[name].combine_chunks()
    return pa.array([list(row) for row in rows], type=pa.list_(item_type or pa.int64()))


def cls_positions(input_ids, cls_id: Optional[int]) -> np.ndarray:
    """(F,) int64 index of the first ``cls_id`` in each feature of ``input_ids`` (rows, or a Dataset: see
    :func:`arrow_column`), 0 when absent; XLNet puts it last. The CLS rule of labels, evaluation and ``QAModel``."""
    col = arrow_column(input_ids, "input_ids")
    outer = col.offsets.to_numpy()  # (F+1,)
    out = np.zeros(len(outer) - 1, dtype=np.int64)
    if cls_id is None or len(out) == 0:
        return out
    values = col.values.to_numpy()[outer[0]:outer[-1]]
    hits = np.flatnonzero(values == cls_id)
    rows = np.searchsorted(outer[1:] - outer[0], hits, side="right")
    first_rows, first = np.unique(rows, return_index=True)
    out[first_rows] = hits[first] - (outer[first_rows] - outer[0])
    return out


def prepare_train_features(examples: dict, tokenizer: Any, max_length: int = 384, stride: int = 128, *,
                           pad_to_max_length: bool = False) -> dict:
    """The model inputs of ``examples`` (columns ``question``, ``context``, ``answers``) plus ``start_positions`` and
    ``end_positions`` by the reference rule: the first answer is the label; no answer (SQuAD v2): (CLS, CLS)."""
    enc, ctx_id, sample_map, offset_mapping = _tokenize(examples, tokenizer, max_length, stride, pad_to_max_length)
    answers = examples["answers"]
    cls_at = cls_positions(enc["input_ids"], cls_token_id(tokenizer))  # (F,)
    starts, ends = [], []
    for i, offsets in enumerate(offset_mapping):
        answer = answers[sample_map[i]]
        cls = int(cls_at[i])
        s, e = cls, cls  # unanswerable (SQuAD v2)
        if answer["answer_start"]:
            start_char = answer["answer_start"][0]
            seq = enc.sequence_ids(i)  # the context's tokens are one run: its first and last token
            c0, c1 = seq.index(ctx_id), len(seq) - 1 - seq[::-1].index(ctx_id)
            s, e = label_window(offsets, c0, c1, start_char, start_char + len(answer["text"][0]), cls)
        starts.append(s)
        ends.append(e)
    return {**enc, "start_positions": starts, "end_positions": ends}


def prepare_validation_features(examples: dict, tokenizer: Any, max_length: int = 384, stride: int = 128, *,
                                pad_to_max_length: bool = False) -> dict:
    """Evaluation features: model inputs, ``example_id`` and ``offset_mapping`` (None outside the context); as
    :func:`prepare_train_features`, with the column ``id`` instead of ``answers``."""
    enc, ctx_id, sample_map, offset_mapping = _tokenize(examples, tokenizer, max_length, stride, pad_to_max_length)
    offsets = [[o if sid == ctx_id else None for sid, o in zip(enc.sequence_ids(i), window)]
               for i, window in enumerate(offset_mapping)]
    return {**enc, "example_id": [examples["id"][s] for s in sample_map], "offset_mapping": offsets}


def tokenize_split(examples, split: str, tokenizer: Any, max_length: int, stride: int, pad_to_max_length: bool = False,
                   num_proc: Optional[int] = None):
    """A split's examples (``datasets.Dataset``) -> its features through ``Dataset.map(batched=True)``, each with its
    ``feature_index`` (the position the evaluation gather restores)."""
    fn = prepare_train_features if split == "train" else prepare_validation_features
    features = examples.map(
        fn, batched=True, remove_columns=examples.column_names, num_proc=num_proc if num_proc and num_proc > 1 else None,
        fn_kwargs=dict(tokenizer=tokenizer, max_length=max_length, stride=stride, pad_to_max_length=pad_to_max_length),
        desc=f"Tokenizing {split}", load_from_cache_file=False)
    return features.add_column("feature_index", np.arange(len(features), dtype=np.int64))
