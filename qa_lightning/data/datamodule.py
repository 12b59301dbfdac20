"""SquadDataModule: the Lightning hooks over the data wing (splits built and cached, loaders, resume position).
Under DDP ``prepare_data`` (one process per node) builds the feature cache and ``setup`` loads it on every rank.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional, Union

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from ..evaluation.evalset import EvalSet, build_eval_set
from ..hf import load_tokenizer
from ..resume import position_identity
from .batching import QACollator
from .buckets import buckets_for
from .features import cls_token_id
from .loaders import eval_sampler, make_loader, train_sampler
from .options import check_options, evaluation_settings
from .position import TrainingPosition
from .sources import ColumnNames
from .splits import SplitStore

SPLITS = ("train", "validation", "test", "predict")
STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",),
                "predict": ("predict",)}


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
        check_options(max_length, stride, length_buckets, batch_size, dict(
            train_file=train_file, validation_file=validation_file, test_file=test_file, predict_file=predict_file))
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.seed = seed if seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 42))
        evaluation = evaluation_settings(self.hparams)  # the rules the inference settings of a checkpoint use too
        self.eval_batch_size = evaluation["batch_size"]
        self.version_2_with_negative = evaluation["version_2_with_negative"]
        cols = ColumnNames(id=id_column, question=question_column, context=context_column, answers=answer_column)
        cache_root = cache_dir or os.environ.get("QA_LIGHTNING_CACHE") or os.path.join(
            os.path.expanduser("~"), ".cache", "qa_lightning")
        self.splits = SplitStore(self.hparams, cols, self.version_2_with_negative, cache_root)
        self.position = TrainingPosition(self._identity)
        self.examples: dict = {}  # split -> datasets.Dataset of the examples
        self.features: dict = {}  # split -> datasets.Dataset of their features
        self.reports: dict[str, str] = {}  # split -> what loading did (printed; the model card's data sizes)
        self._eval_sets: dict[str, EvalSet] = {}
        self._buckets: Optional[list[int]] = None

    @property
    def tokenizer(self):
        return load_tokenizer(self.hparams.model_name_or_path)

    def prepare_data(self) -> None:
        """Build every split the coming stage needs (runs on one process per node)."""
        stage = self.trainer.state.fn if self.trainer is not None else None
        for split in STAGE_SPLITS.get(stage or "fit", STAGE_SPLITS["fit"]):
            self.splits.ensure(split)

    def setup(self, stage: Optional[str] = None) -> None:
        for split in STAGE_SPLITS.get(stage or "fit", STAGE_SPLITS["fit"]):
            self.examples[split], self.features[split], report = self.splits.load(split)
            self.reports[split] = f"{self.splits.source(split)}: {report}"  # this run's file (caches are shared)
            rank_zero_info(f"[{split}] {self.reports[split]}")  # repairs and skips are never silent
            self._eval_sets.pop(split, None)

    def eval_set(self, split: str = "validation") -> EvalSet:
        """Arrays for decoding the given evaluation split (cached per split)."""
        if split not in self.features:
            raise RuntimeError(f"split {split!r} is not set up; call setup() first")
        if split not in self._eval_sets:
            self._eval_sets[split] = build_eval_set(self.examples[split], self.features[split],
                                                    cls_token_id(self.tokenizer), self.hparams.max_length,
                                                    self.version_2_with_negative)
        return self._eval_sets[split]

    def length_buckets(self) -> Optional[list[int]]:
        """The padded lengths batches use (None: no buckets); "auto" reads the training split's lengths (once)."""
        hp = self.hparams
        if hp.length_buckets is None or hp.pad_to_max_length:
            return None
        if self._buckets is None:
            ds = next((self.features[s] for s in SPLITS if s in self.features), None)
            self._buckets, note = buckets_for(hp.length_buckets, ds, hp.max_length, hp.pad_to_multiple_of)
            rank_zero_info(note)
        return self._buckets

    def collator(self) -> QACollator:
        return QACollator.for_tokenizer(self.tokenizer, self.hparams.pad_to_multiple_of,
                                        self.hparams.max_length if self.hparams.pad_to_max_length else None,
                                        self.length_buckets())

    def _loader(self, split: str, batch_size: int, sampler: Iterable[int]) -> DataLoader:
        return make_loader(self.features[split], self.tokenizer, batch_size, sampler, self.collator(),
                           self.hparams.num_workers, self.seed)

    def train_dataloader(self) -> DataLoader:
        grouped = self.hparams.group_by_length and not self.hparams.pad_to_max_length
        sampler = train_sampler(self.features["train"], self.batch_size, grouped, self.seed,
                                lambda: self.trainer.current_epoch, self.position.skip, self.trainer)
        return self._loader("train", self.batch_size, sampler)  # DDP: this rank's share, resumable mid-epoch

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self.eval_batch_size, eval_sampler(self.features["validation"]))

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, eval_sampler(self.features["test"]))

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", self.eval_batch_size, eval_sampler(self.features["predict"]))

    def _identity(self) -> dict:
        return position_identity(os.path.basename(self.splits.path("train")), {**self.hparams, "seed": self.seed})

    def state_dict(self) -> dict:
        """Saved in every checkpoint: where in which epoch training stood (``position.py``)."""
        return self.position.state(self.trainer, self.batch_size)

    def load_state_dict(self, state: dict) -> None:
        note = self.position.restore(state, self.trainer)
        if note:
            rank_zero_info(note)
