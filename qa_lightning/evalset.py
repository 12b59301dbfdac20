"""What decoding needs for one evaluation split, as arrays, read straight from the Arrow buffers of the features.

    from qa_lightning.evalset import offsets_array
    offsets = offsets_array(dm.val_dataset)   # (F, L, 2) int32, -1 outside the context

Used by ``SquadDataModule.eval_set``; converting the ``offset_mapping`` column through Python objects would take
seconds per evaluation split, these take milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["EvalSet", "offsets_array", "cls_positions"]


@dataclass
class EvalSet:
    """What decoding needs for one evaluation split, as arrays (built once per split)."""

    example_ids: list  # (E,)
    contexts: list  # (E,)
    answers: list  # (E,) lists of gold texts
    feature_to_example: np.ndarray  # (F,) int64
    offsets: np.ndarray  # (F, L, 2) int32, -1 outside the context
    cls_index: np.ndarray  # (F,) int64 position of the CLS token


def offsets_array(features) -> np.ndarray:
    """``offset_mapping`` column (lists with None outside the context) -> int32 (F, L, 2), -1 for None/padding.

    Reads the Arrow buffers directly: converting millions of Python tuples would take seconds.
    """
    import pyarrow.compute as pc

    if getattr(features, "_indices", None) is not None:  # a select()/shuffle() view: materialise its rows
        features = features.flatten_indices()
    col = features.data.column("offset_mapping").combine_chunks()  # list<list<int>>, inner lists nullable
    outer = col.offsets.to_numpy()  # (F+1,)
    lengths = np.diff(outer)
    inner = col.values.slice(int(outer[0]), int(outer[-1] - outer[0]))
    starts = pc.fill_null(pc.list_element(inner, 0), -1).to_numpy(zero_copy_only=False)
    ends = pc.fill_null(pc.list_element(inner, 1), -1).to_numpy(zero_copy_only=False)
    n, width = len(lengths), int(lengths.max()) if len(lengths) else 0
    out = np.full((n, width, 2), -1, dtype=np.int32)
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(len(starts)) - np.repeat(outer[:-1] - outer[0], lengths)
    out[rows, cols, 0] = starts
    out[rows, cols, 1] = ends
    return out


def cls_positions(features, cls_id: Optional[int]) -> np.ndarray:
    """(F,) index of the first CLS token of each feature (0 when absent); XLNet puts it last."""
    if getattr(features, "_indices", None) is not None:
        features = features.flatten_indices()
    col = features.data.column("input_ids").combine_chunks()
    outer = col.offsets.to_numpy()
    out = np.zeros(len(features), dtype=np.int64)
    if cls_id is None or len(features) == 0:
        return out
    values = col.values.to_numpy()[outer[0]:outer[-1]]
    hits = np.flatnonzero(values == cls_id)
    rows = np.searchsorted(outer[1:] - outer[0], hits, side="right")
    first_rows, first = np.unique(rows, return_index=True)
    out[first_rows] = hits[first] - (outer[first_rows] - outer[0])
    return out
