"""Batching for QA features: dynamic padding of feature dicts into tensors (torch only).
Nothing here changes a label: positions only move when the tokenizer pads on the left, and then by exactly the
padding added.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

# Columns that are padded (value used for padding) -- anything else is stacked as is.
_PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0, "special_tokens_mask": 1}
# Batch entries that are bookkeeping, not model inputs: the feature's row and the padding added on the left
NON_MODEL_KEYS = ("feature_index", "pad_left")


class QACollator:
    """Pads a list of feature dicts into a batch of tensors.

    Args:
        pad_token_id: id used to pad ``input_ids``.
        pad_to_multiple_of: round the padded length up to a multiple of this (8 suits tensor cores; 1 disables).
        pad_to_length: pad every batch to this fixed length instead (the reference's padding="max_length").
        padding_side: "right" or "left" (XLNet); with "left", label positions are shifted by the padding added.
        buckets: pad each batch to the smallest of these lengths that holds its longest feature (a handful of
            shapes for compiled steps, see ``buckets.py``); ``pad_to_length`` wins over it, it wins over the multiple.
    """

    def __init__(self, pad_token_id: int = 0, pad_to_multiple_of: int = 8, pad_to_length: int | None = None,
                 padding_side: str = "right", buckets: Sequence[int] | None = None):
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = max(1, int(pad_to_multiple_of or 1))
        self.pad_to_length = pad_to_length
        self.padding_side = padding_side
        self.buckets = sorted(int(b) for b in buckets) if buckets else None

    @classmethod
    def for_tokenizer(cls, tokenizer, pad_to_multiple_of: int = 8, pad_to_length: int | None = None,
                      buckets: Sequence[int] | None = None) -> "QACollator":
        """A collator with ``tokenizer``'s pad token (0 when it has none) and padding side."""
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return cls(pad_id, pad_to_multiple_of, pad_to_length, tokenizer.padding_side, buckets)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        lengths = [len(f["input_ids"]) for f in features]
        longest = max(lengths)
        if self.pad_to_length is not None:
            target = max(self.pad_to_length, longest)
        elif self.buckets is not None:
            fits = [b for b in self.buckets if b >= longest]
            if not fits:
                raise ValueError(f"a feature of {longest} tokens is longer than the largest bucket {self.buckets[-1]}")
            target = fits[0]
        else:
            target = int(math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of)
        batch: dict[str, torch.Tensor] = {}
        for key in features[0]:
            if key == "input_ids" or key in _PAD_VALUES:
                value = self.pad_token_id if key == "input_ids" else _PAD_VALUES[key]
                arr = np.full((len(features), target), value, dtype=np.int64)  # (B, L)
                for i, f in enumerate(features):
                    row = f[key]
                    if self.padding_side == "right":
                        arr[i, : len(row)] = row
                    else:
                        arr[i, target - len(row):] = row
                batch[key] = torch.from_numpy(arr)
            elif key in ("offset_mapping", "example_id"):
                continue
            else:
                batch[key] = torch.as_tensor(np.asarray([f[key] for f in features]))
        if self.padding_side == "left":
            shift = torch.as_tensor([target - n for n in lengths], dtype=torch.long)  # (B,)
            for key in ("start_positions", "end_positions"):
                if key in batch:
                    batch[key] = batch[key] + shift
            batch["pad_left"] = shift
        return batch

