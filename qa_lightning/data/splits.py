"""The splits of one data configuration: where each comes from, its cache folder, built once and loaded.
A split's cache folder is named by a fingerprint of everything that changes its features (source file bytes,
tokenizer, window sizes, code version), so a second run, or another rank, loads instead of tokenizing.
"""

from __future__ import annotations

import os
from typing import Mapping

from ..files import discard
from ..hf import load_tokenizer
from .cache import ensure_split, fingerprint, load_split_cache, save_split
from .features import tokenize_split
from .sources import ColumnNames, load_split


class SplitStore:
    """Builds, caches and loads the splits ("train", "validation", "test", "predict") of one configuration.

    Args:
        hp: the data module's hyper-parameters (files, dataset, windows, sample limits, workers, overwrite_cache).
        cols: the column names of the source.
        version_2_with_negative: SQuAD v2 data (unanswerable questions allowed).
        cache_root: the folder holding one cache folder per split and fingerprint.
    """

    def __init__(self, hp: Mapping, cols: ColumnNames, version_2_with_negative: bool, cache_root: str):
        self.hp = hp
        self.cols = cols
        self.version_2_with_negative = version_2_with_negative
        self.cache_root = cache_root
        self.status: dict[str, str] = {}  # split -> "hit" | "built" (tests and logs read it)
        self._paths: dict[str, str] = {}

    def source(self, split: str) -> str:
        """The file (or hub dataset) a split is read from; test and predict default to the validation data."""
        hp = self.hp
        files = {"train": hp["train_file"], "validation": hp["validation_file"],
                 "test": hp["test_file"] or hp["validation_file"],
                 "predict": hp["predict_file"] or hp["validation_file"]}
        return files[split] or hp["dataset_name"]

    def _max_samples(self, split: str):
        return self.hp["max_train_samples"] if split == "train" else self.hp["max_eval_samples"]

    def path(self, split: str) -> str:
        """The split's cache folder (the source file is hashed once per run)."""
        if split not in self._paths:
            tok = load_tokenizer(self.hp["model_name_or_path"])
            keys = dict(split=split, max_length=self.hp["max_length"], stride=self.hp["stride"],
                        pad=self.hp["pad_to_max_length"], n=self._max_samples(split), side=tok.padding_side,
                        cols=self.cols.__dict__, v2=self.version_2_with_negative)
            name = fingerprint(self.source(split), self.hp["dataset_config_name"], tok, keys)
            self._paths[split] = os.path.join(self.cache_root, f"{split}-{name}")
        return self._paths[split]

    def ensure(self, split: str) -> str:
        """Build the split unless a cache matching its manifest holds it (``overwrite_cache``: rebuild once)."""
        path = self.path(split)
        if self.hp["overwrite_cache"] and self.status.get(split) != "built" and os.path.isdir(path):
            discard(path)
        if ensure_split(path, lambda p: self._build(split, p)) == "hit":
            self.status.setdefault(split, "hit")
        return path

    def load(self, split: str):
        """``(examples, features, report line)`` of a split, built first if needed (normally a cache hit)."""
        return load_split_cache(self.ensure(split), lambda p: self._build(split, p))

    def _build(self, split: str, path: str) -> None:
        """Load, validate and tokenize one split, then save examples + features atomically to ``path``."""
        hp = self.hp
        examples, report = load_split(self.source(split), split, hp["dataset_config_name"], self.cols,
                                      self._max_samples(split), self.version_2_with_negative)
        features = tokenize_split(examples, split, load_tokenizer(hp["model_name_or_path"]), hp["max_length"],
                                  hp["stride"], hp["pad_to_max_length"], hp["preprocessing_num_workers"])
        save_split(path, examples, features, f"{report.summary(with_source=False)} -> {len(features)} features")
        self.status[split] = "built"
