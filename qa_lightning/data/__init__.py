"""The data wing: sources -> features -> cache -> batches, and the LightningDataModule that ties them together.

    from qa_lightning.data.features import prepare_train_features   # pure: no Lightning imported
    from qa_lightning.data import SquadDataModule                     # imports Lightning (lazily, on first use)

| module | job |
| --- | --- |
| ``sources.py`` | read any QA format (SQuAD JSON, flat json/jsonl/csv/parquet, hub) into checked records |
| ``features.py`` | sliding windows, labels, offsets (the recipe's preprocessing) |
| ``cache.py`` | fingerprint and atomic save/load of one split's features |
| ``batching.py`` | dynamic padding into tensors (``QACollator``) |
| ``buckets.py`` | a few fixed padded lengths chosen from the length histogram (``--data.length_buckets``) |
| ``samplers.py`` | resumable epoch orders, length-grouped training batches, length-sorted evaluation |
| ``datamodule.py`` | ``SquadDataModule``: builds, caches and serves all of the above |
"""

from __future__ import annotations

__all__ = ["SquadDataModule"]


def __getattr__(name: str):
    if name == "SquadDataModule":
        from .datamodule import SquadDataModule

        return SquadDataModule
    raise AttributeError(f"module 'qa_lightning.data' has no attribute {name!r}")
