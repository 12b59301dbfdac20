"""data/samplers.py: the batch order is deterministic per epoch and skips what a resumed epoch already trained;
under DDP each rank gets what Lightning's DistributedSamplerWrapper gives it and resumes at its own batch."""

from __future__ import annotations

import numpy as np
import pytest

from qa_lightning.data.samplers import EpochSampler, LengthGroupedSampler


@pytest.mark.parametrize("cls", ["epoch", "grouped"])
def test_samplers_are_deterministic_per_epoch_and_skip_on_resume(cls):
    lengths = np.random.default_rng(0).integers(10, 300, size=103)
    skips = {}

    def make():
        if cls == "epoch":
            return EpochSampler(len(lengths), seed=3, skip_fn=lambda e: skips.pop(e, 0))
        return LengthGroupedSampler(lengths, 8, seed=3, mega_factor=2, skip_fn=lambda e: skips.pop(e, 0))

    s = make()
    s.set_epoch(1)
    full = list(s)
    s.set_epoch(2)
    assert list(s) != full and sorted(list(s)) == list(range(103))
    resumed = make()
    resumed.set_epoch(1)
    skips[1] = 24
    assert list(resumed) == full[24:]
    assert list(resumed) == full  # the skip applies once


@pytest.mark.parametrize("epoch", [0, 3])
def test_ddp_shards_as_lightning_does_and_each_rank_resumes_at_its_own_batch(epoch):
    """ShardedSampler gives each rank what Lightning's DistributedSamplerWrapper gives it for a training sampler
    (so uninterrupted DDP runs are unchanged) and, resumed after 5 batches of 4 on each of 2 ranks, the rest of it."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    from qa_lightning.data.samplers import ShardedSampler

    lengths = np.random.default_rng(0).integers(10, 300, size=103)  # odd: DistributedSampler pads one index
    skips = {}

    def grouped():
        return LengthGroupedSampler(lengths, 4, seed=3, epoch_fn=lambda: epoch, skip_fn=lambda e: skips.pop(e, 0))

    for rank in (0, 1):
        lightning = DistributedSamplerWrapper(grouped(), num_replicas=2, rank=rank, shuffle=True, seed=42)
        lightning.set_epoch(epoch)  # what Lightning does for a training loader under DDP
        ours = ShardedSampler(grouped(), num_replicas=2, rank=rank, seed=42)
        full = list(ours)
        assert full == list(lightning) and len(full) == len(ours) == 52
        skips[epoch] = 5 * 4 * 2
        assert list(ours) == full[20:]
