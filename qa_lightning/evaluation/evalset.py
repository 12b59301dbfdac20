"""What decoding needs for one evaluation split, as arrays, read straight from the Arrow buffers of the features.

    from qa_lightning.evaluation.evalset import build_eval_set, offsets_array   # cls_token_id: data/features.py
    ev = build_eval_set(examples, features, cls_token_id(tokenizer))  # datasets.Dataset pair -> EvalSet
    offsets = offsets_array(features)   # (F, L, 2) int32, -1 outside the context (also takes lists of rows)

Used by ``SquadDataModule.eval_set`` and the inference API (milliseconds; through Python objects: seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..data.features import arrow_column, cls_positions


@dataclass
class EvalSet:
    """What decoding needs for one evaluation split, as arrays (built once per split)."""

    example_ids: list  # (E,)
    contexts: list  # (E,)
    answers: list  # (E,) lists of gold texts
    feature_to_example: np.ndarray  # (F,) int64
    offsets: np.ndarray  # (F, W, 2) int32, -1 outside the context (padded to ``width`` here)
    cls_index: np.ndarray  # (F,) int64 position of the CLS token
    width: int = 0  # logits width the model's outputs are aligned to (max_length); 0: the offsets' width
    version_2_with_negative: bool = False  # SQuAD v2 data: an example may have no answer

    def __post_init__(self) -> None:
        self.width = max(int(self.width), self.offsets.shape[1])
        if self.offsets.shape[1] < self.width:  # as wide as the logits, so that any logit column has its offsets
            self.offsets = np.pad(self.offsets, ((0, 0), (0, self.width - self.offsets.shape[1]), (0, 0)),
                                  constant_values=-1)


def offsets_array(features, width: Optional[int] = None) -> np.ndarray:
    """Offsets -> int32 (F, W, 2), -1 for None (outside the context) and padding.

    ``features``: a ``datasets.Dataset`` with an ``offset_mapping`` column (its Arrow buffers are read directly:
    converting millions of Python tuples would take seconds) or a list of rows of ``(start, end)``/``None``.
    ``width``: at least this many columns (default: the longest row).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    col = arrow_column(features, "offset_mapping", pa.list_(pa.int64()))  # list<list<int>>, inner lists nullable
    outer = col.offsets.to_numpy()  # (F+1,)
    lengths = np.diff(outer)
    inner = col.values.slice(int(outer[0]), int(outer[-1] - outer[0]))
    starts = pc.fill_null(pc.list_element(inner, 0), -1).to_numpy(zero_copy_only=False)
    ends = pc.fill_null(pc.list_element(inner, 1), -1).to_numpy(zero_copy_only=False)
    n = len(lengths)
    width = max(int(lengths.max()) if n else 0, width or 0)
    out = np.full((n, width, 2), -1, dtype=np.int32)
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(len(starts)) - np.repeat(outer[:-1] - outer[0], lengths)
    out[rows, cols, 0] = starts
    out[rows, cols, 1] = ends
    return out


def build_eval_set(examples, features, cls_id: Optional[int], width: int = 0,
                   version_2_with_negative: bool = False) -> EvalSet:
    """EvalSet of an evaluation split: ``examples`` (id, context, answers) and its ``features`` (example_id,
    offset_mapping, input_ids), both ``datasets.Dataset``; ``width``/``version_2_with_negative`` as EvalSet's."""
    ids = examples["id"]
    index = {k: i for i, k in enumerate(ids)}
    f2e = np.fromiter((index[k] for k in features["example_id"]), dtype=np.int64, count=len(features))
    return EvalSet(example_ids=list(ids), contexts=list(examples["context"]),
                   answers=[a["text"] for a in examples["answers"]], feature_to_example=f2e,
                   offsets=offsets_array(features, width), cls_index=cls_positions(features, cls_id), width=width,
                   version_2_with_negative=version_2_with_negative)
