"""SquadDataModule: load SQuAD-style data, build and cache features, serve padded batches.

    dm = SquadDataModule(model_name_or_path="bert-base-cased",
                         train_file="train.json", validation_file="dev.json")
    dm.prepare_data(); dm.setup("fit")
    dm.train_dataset, dm.val_dataset, dm.val_examples   # datasets.Dataset

Features are computed with ``Dataset.map(batched=True)`` by the pure functions in ``features.py`` and saved under
``cache_dir`` (default ``~/.cache/qa_lightning``) in a folder named by a fingerprint of everything that changes
them (source file contents, tokenizer, window sizes, code version), so a second run loads instead of tokenizing.
Under DDP ``prepare_data`` (one process per node) writes the cache atomically and ``setup`` loads it on every rank.
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Union

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..errors import QAInputError
from ..evaluation.evalset import EvalSet, build_eval_set
from ..hf import load_tokenizer
from ..resume import check_same_position, position_identity
from .batching import QACollator, default_num_workers, evaluation_settings
from .buckets import buckets_for, feature_lengths, parse_bucket_spec
from .cache import discard_split, ensure_split, fingerprint, load_split_cache, save_split
from .features import check_window_args, cls_token_id, tokenize_split
from .samplers import EpochSampler, LengthGroupedSampler, OrderSampler, ShardedSampler, sorted_by_length
from .sources import ColumnNames, load_split

__all__ = ["SquadDataModule"]

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("start_positions", "end_positions")


def _check_options(max_length: int, stride: int, length_buckets, batch_size: int, files: dict) -> None:
    """One-line errors for impossible options and missing files, before anything is loaded."""
    try:
        check_window_args(max_length, stride)
    except ValueError as err:
        raise QAInputError(f"--data.max_length/--data.stride: {err}") from None
    try:
        parse_bucket_spec(length_buckets, max_length)
    except ValueError as err:
        raise QAInputError(f"--data.length_buckets: {err}") from None
    if batch_size < 1:
        raise QAInputError(f"--data.batch_size must be >= 1, got {batch_size}")
    for name, path in files.items():
        if path is not None and not os.path.isfile(path):
            what = "is a directory, expected a data file" if os.path.isdir(path) else "no such file"
            raise QAInputError(f"--data.{name}: {path}: {what}")


class SquadDataModule(L.LightningDataModule):
    """SQuAD-style extractive QA data: hub dataset or local files -> cached sliding-window features -> loaders.

    Args:
        model_name_or_path: tokenizer source; the CLI links it to the model's so the two never disagree.
        dataset_name: hub dataset used when no local file is given for a split.
        dataset_config_name: hub dataset configuration.
        train_file: local training file (official SQuAD .json, flat .json, .jsonl, .csv, .parquet).
        validation_file: local validation file (same formats).
        test_file: file for ``test``; defaults to the validation data.
        predict_file: file for ``predict`` (answers not needed); defaults to the validation data.
        max_length: tokens per window (question + context + special tokens).
        stride: tokens of overlap between consecutive windows of one context.
        batch_size: training batch size per device.
        eval_batch_size: evaluation batch size per device (default: 4x ``batch_size``; no gradients are kept).
        max_train_samples: keep only the first N training examples (quick runs).
        max_eval_samples: keep only the first N evaluation examples.
        pad_to_max_length: pad every feature to ``max_length`` like the reference (slower; off pads per batch).
        pad_to_multiple_of: round each batch's padded length up to a multiple of this.
        length_buckets: pad batches to a few fixed lengths (few shapes for compiled/CUDA-graph steps): "auto"
            (4 buckets chosen from the training lengths, least padding), "auto:N", or a list such as
            [128, 256, 384] (its largest must be >= max_length). None (default): the multiple above.
        group_by_length: training batches of similar lengths (random mega-batches sorted by length).
        sort_eval_by_length: evaluate longest-first so batches waste no padding (predictions are reordered back).
        num_workers: loader worker processes (None: 4 on GPU machines, capped by the CPU count; 0 on CPU-only).
        preprocessing_num_workers: processes for the tokenization map (None: one).
        cache_dir: where processed features are cached (None: $QA_LIGHTNING_CACHE or ~/.cache/qa_lightning).
        overwrite_cache: rebuild features even if cached.
        seed: seed of the training order (None: the run's --seed_everything, i.e. PL_GLOBAL_SEED; else 42).
        version_2_with_negative: SQuAD v2 data (unanswerable questions allowed; automatic for ``squad_v2``).
        question_column: column holding the question in the source.
        context_column: column holding the context.
        answer_column: column holding ``{"text": [...], "answer_start": [...]}``.
        id_column: column holding the example id (missing ids are numbered).
    """

    def __init__(
        self,
        model_name_or_path: str = "bert-base-cased",
        dataset_name: str = "squad",
        dataset_config_name: Optional[str] = None,
        train_file: Optional[str] = None,
        validation_file: Optional[str] = None,
        test_file: Optional[str] = None,
        predict_file: Optional[str] = None,
        max_length: int = 384,
        stride: int = 128,
        batch_size: int = 8,
        eval_batch_size: Optional[int] = None,
        max_train_samples: Optional[int] = None,
        max_eval_samples: Optional[int] = None,
        pad_to_max_length: bool = False,
        pad_to_multiple_of: int = 8,
        length_buckets: Optional[Union[str, list[int]]] = None,
        group_by_length: bool = True,
        sort_eval_by_length: bool = True,
        num_workers: Optional[int] = None,
        preprocessing_num_workers: Optional[int] = None,
        cache_dir: Optional[str] = None,
        overwrite_cache: bool = False,
        seed: Optional[int] = None,
        version_2_with_negative: bool = False,
        question_column: str = "question",
        context_column: str = "context",
        answer_column: str = "answers",
        id_column: str = "id",
    ):
        super().__init__()
        _check_options(max_length, stride, length_buckets, batch_size, dict(
            train_file=train_file, validation_file=validation_file, test_file=test_file, predict_file=predict_file))
        self.save_hyperparameters()
        self.model_name_or_path = model_name_or_path
        self.max_length, self.stride = max_length, stride
        self.batch_size = batch_size
        self.seed = seed if seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 42))
        evaluation = evaluation_settings(self.hparams)  # the rules the inference settings of a checkpoint use too
        self.eval_batch_size = evaluation["batch_size"]
        self.version_2_with_negative = evaluation["version_2_with_negative"]
        self.cols = ColumnNames(id=id_column, question=question_column, context=context_column, answers=answer_column)
        self.cache_root = cache_dir or os.environ.get("QA_LIGHTNING_CACHE") or os.path.join(
            os.path.expanduser("~"), ".cache", "qa_lightning")
        self.cache_status: dict[str, str] = {}  # split -> "hit" | "built" (tests and logs read it)
        self.reports: dict[str, str] = {}
        self.train_dataset = self.val_dataset = self.test_dataset = self.predict_dataset = None
        self.val_examples = self.test_examples = self.predict_examples = None
        self._eval_sets: dict[str, EvalSet] = {}
        self._paths: dict[str, str] = {}
        self._buckets: Optional[list[int]] = None

    # ------------------------------------------------------------------------------------------ properties
    @property
    def tokenizer(self):
        return load_tokenizer(self.model_name_or_path)

    def _source(self, split: str) -> str:
        hp = self.hparams
        files = {"train": hp.train_file, "validation": hp.validation_file,
                 "test": hp.test_file or hp.validation_file, "predict": hp.predict_file or hp.validation_file}
        return files[split] or hp.dataset_name

    def _max_samples(self, split: str) -> Optional[int]:
        return self.hparams.max_train_samples if split == "train" else self.hparams.max_eval_samples

    def _fingerprint(self, split: str) -> str:
        src = self._source(split)
        tok = self.tokenizer
        keys = dict(split=split, max_length=self.max_length, stride=self.stride,
                    pad=self.hparams.pad_to_max_length, n=self._max_samples(split), side=tok.padding_side,
                    cols=self.cols.__dict__, v2=self.version_2_with_negative)
        return fingerprint(src, self.hparams.dataset_config_name, tok, keys)

    def _cache_path(self, split: str) -> str:
        if split not in self._paths:  # hashing the source file once per run is enough
            self._paths[split] = os.path.join(self.cache_root, f"{split}-{self._fingerprint(split)}")
        return self._paths[split]

    # ----------------------------------------------------------------------------------------- building
    def _build(self, split: str, path: str) -> None:
        """Load, validate and tokenize one split, then save examples + features atomically to ``path``."""
        examples, report = load_split(self._source(split), split, self.hparams.dataset_config_name, self.cols,
                                      self._max_samples(split), self.version_2_with_negative)
        features = tokenize_split(examples, split, self.tokenizer, self.max_length, self.stride,
                                  self.hparams.pad_to_max_length, self.hparams.preprocessing_num_workers)
        save_split(path, examples, features, f"{report.summary(with_source=False)} -> {len(features)} features")
        self.cache_status[split] = "built"
        log.info("%s -> %d features (cached at %s)", report.summary(), len(features), path)

    def _splits(self, stage: Optional[str]) -> list[str]:
        return {"fit": ["train", "validation"], "validate": ["validation"], "test": ["test"],
                "predict": ["predict"]}.get(stage or "fit", ["train", "validation"])

    def prepare_data(self) -> None:
        """Build every split the coming stage needs (runs on one process per node)."""
        stage = self.trainer.state.fn.value if self.trainer is not None and self.trainer.state.fn else "fit"
        stage = {"validate": "validate", "test": "test", "predict": "predict"}.get(stage, "fit")
        for split in self._splits(stage):
            self._ensure(split)

    def _ensure(self, split: str) -> str:
        path = self._cache_path(split)
        if self.hparams.overwrite_cache and self.cache_status.get(split) != "built" and os.path.isdir(path):
            discard_split(path)
        if ensure_split(path, lambda p: self._build(split, p)) == "hit":  # verified against its manifest
            self.cache_status.setdefault(split, "hit")
        return path

    def setup(self, stage: Optional[str] = None) -> None:
        for split in self._splits(stage):
            path = self._ensure(split)  # normally a cache hit: prepare_data built it
            examples, features, report = load_split_cache(path, lambda p: self._build(split, p))
            self.reports[split] = f"{self._source(split)}: {report}"  # this run's file (caches are shared by content)
            rank_zero_info(f"[{split}] {self.reports[split]}")  # repairs and skips are never silent
            if split == "train":
                self.train_dataset = features
            else:
                setattr(self, f"{'val' if split == 'validation' else split}_dataset", features)
                setattr(self, f"{'val' if split == 'validation' else split}_examples", examples)
                self._eval_sets.pop(split, None)

    # ------------------------------------------------------------------------------------------- eval
    def eval_set(self, split: str = "validation") -> EvalSet:
        """Arrays for decoding the given evaluation split (cached per split)."""
        if split not in self._eval_sets:
            name = "val" if split == "validation" else split
            examples, features = getattr(self, f"{name}_examples"), getattr(self, f"{name}_dataset")
            if examples is None:
                raise RuntimeError(f"split {split!r} is not set up; call setup() first")
            self._eval_sets[split] = build_eval_set(examples, features, cls_token_id(self.tokenizer),
                                                    self.max_length, self.version_2_with_negative)
        return self._eval_sets[split]

    # ---------------------------------------------------------------------------------------- loaders
    def _model_columns(self, ds) -> list[str]:
        inputs = [c for c in self.tokenizer.model_input_names if c in ds.column_names]
        return inputs + [c for c in (*LABEL_COLUMNS, "feature_index") if c in ds.column_names]

    def _collator(self) -> QACollator:
        tok = self.tokenizer
        return QACollator(
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else 0,
            pad_to_multiple_of=self.hparams.pad_to_multiple_of,
            pad_to_length=self.max_length if self.hparams.pad_to_max_length else None,
            padding_side=tok.padding_side, buckets=self.length_buckets())

    def length_buckets(self) -> Optional[list[int]]:
        """The padded lengths batches use (None: no buckets); "auto" reads the training split's lengths (once)."""
        spec = self.hparams.length_buckets
        if spec is None or self.hparams.pad_to_max_length:
            return None
        if self._buckets is None:
            ds = self.train_dataset or self.val_dataset or self.test_dataset or self.predict_dataset
            self._buckets, note = buckets_for(spec, ds, self.max_length, self.hparams.pad_to_multiple_of)
            rank_zero_info(note)
        return self._buckets

    def _loader(self, ds, batch_size: int, sampler: Sampler) -> DataLoader:
        workers = default_num_workers(self.hparams.num_workers)
        return DataLoader(
            ds.select_columns(self._model_columns(ds)), batch_size=batch_size, sampler=sampler,
            collate_fn=self._collator(), num_workers=workers, pin_memory=torch.cuda.is_available(),
            # Own generator: a new iterator draws no seed from the global (dropout) RNG -> exact epoch-end resume.
            persistent_workers=workers > 0, generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        ds = self.train_dataset
        common = dict(seed=self.seed, epoch_fn=lambda: self.trainer.current_epoch, skip_fn=self._skip)
        if self.hparams.group_by_length and not self.hparams.pad_to_max_length:
            sampler = LengthGroupedSampler(feature_lengths(ds), self.batch_size, **common)
        else:
            sampler = EpochSampler(len(ds), **common)
        return self._loader(ds, self.batch_size, ShardedSampler.of(sampler, self.trainer))  # DDP: exact resume

    # ------------------------------------------------------------------------- mid-epoch resume
    def state_dict(self) -> dict:
        """Saved in every checkpoint: where in which epoch training stood (batches fully processed)."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": trainer.current_epoch, "batches_done": done, "batch_size": self.batch_size,
                "world_size": trainer.world_size, "mid_epoch": 0 < done < trainer.num_training_batches,
                **self._identity()}

    def _identity(self) -> dict:
        return position_identity(os.path.basename(self._cache_path("train")),
                                 {**self.hparams, "model_name_or_path": self.model_name_or_path, "seed": self.seed})

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state) if state else None
        if self._resume and self.trainer is not None and self.trainer.state.fn == "fit":
            # A mid-epoch position on other batches: QAInputError; at an epoch boundary only a note.
            note = check_same_position(state, self._identity(), str(getattr(self.trainer, "ckpt_path", "")))
            if note:
                rank_zero_info(note)

    def _skip(self, epoch: int) -> int:
        """Samples of ``epoch`` consumed before the checkpoint we resumed from (once; 0 otherwise)."""
        resume = getattr(self, "_resume", None)
        if not resume or resume.get("epoch") != epoch:
            return 0
        self._resume = None
        return int(resume["batches_done"]) * int(resume["batch_size"]) * int(resume.get("world_size", 1))

    def _eval_loader(self, ds) -> DataLoader:
        if self.hparams.sort_eval_by_length and not self.hparams.pad_to_max_length:
            order = sorted_by_length(feature_lengths(ds))
        else:
            order = np.arange(len(ds))
        return self._loader(ds, self.eval_batch_size, OrderSampler(order))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.predict_dataset)
