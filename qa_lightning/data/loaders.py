"""DataLoaders for QA features: the model's columns, the training order (resumable, DDP-sharded), length-sorted
evaluation, worker processes (torch only)."""

from __future__ import annotations

import os
from typing import Callable, Iterable, Optional

import torch
from torch.utils.data import DataLoader, Sampler

from .batching import QACollator
from .buckets import feature_lengths
from .samplers import EpochSampler, LengthGroupedSampler, ShardedSampler, sorted_by_length


def model_columns(features, tokenizer) -> list[str]:
    """The columns a batch carries: the tokenizer's model inputs, the labels and ``feature_index``."""
    inputs = [c for c in tokenizer.model_input_names if c in features.column_names]
    return inputs + [c for c in ("start_positions", "end_positions", "feature_index") if c in features.column_names]


def make_loader(features, tokenizer, batch_size: int, sampler: Iterable[int], collator: QACollator,
                num_workers: Optional[int] = None, seed: int = 0) -> DataLoader:
    """``num_workers`` None: 4 on GPU machines (capped by the CPU count), 0 on CPU-only ones (there the main process
    collates faster than it can hand batches over to workers)."""
    workers = num_workers
    if workers is None:
        workers = min(4, max(0, (os.cpu_count() or 1) - 1)) if torch.cuda.is_available() else 0
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
    if trainer is None or trainer.world_size <= 1:
        return sampler
    return ShardedSampler(sampler, trainer.world_size, trainer.global_rank)


def eval_sampler(features) -> list[int]:
    """Longest first, so that batches waste no padding (the gather puts predictions back in dataset order); a list
    of indices is a sampler to ``DataLoader``."""
    return sorted_by_length(feature_lengths(features)).tolist()
