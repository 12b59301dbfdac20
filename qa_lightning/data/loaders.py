"""DataLoaders for QA features: the model's columns, the training order (resumable, DDP-sharded), length-sorted
evaluation, worker processes (torch only).

    loader = make_loader(features, tokenizer, 32, eval_sampler(features), QACollator.for_tokenizer(tokenizer))
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader, Sampler

from .batching import QACollator
from .buckets import feature_lengths
from .samplers import EpochSampler, LengthGroupedSampler, OrderSampler, ShardedSampler, sorted_by_length

__all__ = ["default_num_workers", "model_columns", "make_loader", "train_sampler", "eval_sampler"]

LABEL_COLUMNS = ("start_positions", "end_positions")


def default_num_workers(requested: Optional[int]) -> int:
    """Loader worker processes: as requested, else 4 on GPU machines (capped by the CPU count), 0 on CPU-only ones
    (there the main process collates faster than it can hand batches over to workers)."""
    if requested is not None:
        return requested
    return min(4, max(0, (os.cpu_count() or 1) - 1)) if torch.cuda.is_available() else 0


def model_columns(features, tokenizer) -> list[str]:
    """The columns a batch carries: the tokenizer's model inputs, the labels and ``feature_index``."""
    inputs = [c for c in tokenizer.model_input_names if c in features.column_names]
    return inputs + [c for c in (*LABEL_COLUMNS, "feature_index") if c in features.column_names]


def make_loader(features, tokenizer, batch_size: int, sampler: Sampler, collator: QACollator,
                num_workers: Optional[int] = None, seed: int = 0) -> DataLoader:
    workers = default_num_workers(num_workers)
    return DataLoader(
        features.select_columns(model_columns(features, tokenizer)), batch_size=batch_size, sampler=sampler,
        collate_fn=collator, num_workers=workers, pin_memory=torch.cuda.is_available(),
        # Own generator: a new iterator draws no seed from the global (dropout) RNG -> exact epoch-end resume.
        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed))


def train_sampler(features, batch_size: int, group_by_length: bool, seed: int, epoch_fn: Callable[[], int],
                  skip_fn: Callable[[int], int], trainer=None) -> Sampler:
    """The training order: length-grouped or plain per-epoch permutations; under DDP this rank's share of it."""
    common = dict(seed=seed, epoch_fn=epoch_fn, skip_fn=skip_fn)
    if group_by_length:
        sampler = LengthGroupedSampler(feature_lengths(features), batch_size, **common)
    else:
        sampler = EpochSampler(len(features), **common)
    return ShardedSampler.of(sampler, trainer)


def eval_sampler(features) -> OrderSampler:
    """Longest first, so that batches waste no padding (the gather puts predictions back in dataset order)."""
    return OrderSampler(sorted_by_length(feature_lengths(features)))
