"""``fit|validate|test|predict`` of ``python -m qa_lightning`` (``__main__.py``) through one LightningCLI subclass.

What this subclass adds to LightningCLI: the model's tokenizer linked to the data's; the automatic precision
(``precision.py``); the always-on callbacks (``--checkpoint.*``, ``--lr_monitor.*``, ``--export.*``,
``--crash_safety.*``, and the learning curves); the recipe's defaults for Lightning's classes (``PARSER_DEFAULTS``);
``--ckpt_path`` checked and merged under the command line (``checkpoints.py``); a resumed ``fit`` continuing its run
folder and ``metrics.csv``; user mistakes as one ``error:`` line, exit status 2 (``errors.user_errors``).
"""

from __future__ import annotations

import csv
import sys
import warnings
from pathlib import Path
from typing import Optional

import lightning as L
from lightning.pytorch.callbacks import Checkpoint, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from jsonargparse import Namespace

from .checkpoints import (allocate_version, check_logger_installed, check_weights_fit, continued_folder,
                          follow_root_dir, given_model_keys, launch_rank_zero, model_settings, resolve_checkpoint,
                          run_folders)
from .crash_safety import CrashSafety
from .data.datamodule import SquadDataModule
from .errors import user_errors
from .export_callback import ExportCallback
from .hf import env_defaults
from .module import QAModule
from .plots import LearningCurves
from .precision import auto_precision
from .resume import training_state

# The recipe's values for the Lightning classes (our own classes' defaults are their signatures). Set through the
# parser so --print_config shows them and flags can change them.
PARSER_DEFAULTS = {
    "trainer.max_epochs": 3,
    "trainer.gradient_clip_val": 1.0,  # the recipe's transformers.Trainer clips at max_grad_norm=1.0
    # save_dir "." follows --trainer.default_root_dir (checkpoints.follow_root_dir)
    "trainer.logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "."}},
    "checkpoint.monitor": "val/f1",
    "checkpoint.mode": "max",
    "checkpoint.save_top_k": 1,
    "checkpoint.filename": "epoch{epoch}-f1{val/f1:.2f}",
    "checkpoint.auto_insert_metric_name": False,
    "lr_monitor.logging_interval": "step",
}


class QACLI(LightningCLI):
    """LightningCLI for QAModule + SquadDataModule (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        given = kwargs.get("args")
        self._argv = [] if isinstance(given, (dict, Namespace)) else list(sys.argv[1:] if given is None else given)
        self._ckpt: Optional[dict] = None  # the --ckpt_path checkpoint, read once (memory-mapped) until instantiation
        self._continued: Optional[Path] = None  # the run folder a resumed fit continues
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.model_name_or_path", "data.model_name_or_path")
        # Always-on callbacks, configurable as --checkpoint.*, --lr_monitor.*, --export.*, --crash_safety.*
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(ExportCallback, "export")
        parser.add_lightning_class_args(CrashSafety, "crash_safety")
        parser.set_defaults(PARSER_DEFAULTS)

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs) -> None:
        super()._add_subcommands(parser, **kwargs)
        from .__main__ import COMMANDS  # dispatched before this CLI is built; listed so that --help shows all

        for name, summary in COMMANDS.items():
            parser._subcommands_action.add_subcommand(name, LightningArgumentParser(description=summary), help=summary)

    def _parse_ckpt_path(self) -> None:
        """Replaces LightningCLI's: that one ``torch.load``s any ``--ckpt_path`` (a traceback for a damaged file) and
        lets the checkpoint's hyper-parameters replace the user's command-line values (see checkpoints.py)."""
        if not self.config.get("subcommand"):
            return
        sub = self.config.subcommand
        cfg = self.config[sub]
        follow_root_dir(cfg)
        path, self._ckpt = resolve_checkpoint(cfg, sub, run_folders(cfg))
        if self._ckpt is None:
            return
        taken = model_settings(self._ckpt, cfg.model, given_model_keys(self._argv))
        if taken:
            shown = ", ".join(f"{k}={v!r} (config: {cfg.model.get(k)!r})" for k, v in taken.items())
            print(f"--ckpt_path {path}: model settings from the checkpoint: {shown}; --model.* options on the "
                  "command line override them", file=sys.stderr)
            self.config = self.parser.parse_object({sub: {"model": taken}}, self.config)

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.trainer.get("precision") is None:
            cfg.trainer.precision = auto_precision(cfg.trainer.get("accelerator"))
        check_logger_installed(cfg)
        resuming = self.subcommand == "fit" and self._ckpt is not None
        self._continued = continued_folder(cfg, cfg.ckpt_path) if resuming else None
        if self._continued is not None:  # Lightning warns of a non-empty folder: here the run goes on in it
            warnings.filterwarnings("ignore", message=r"(Experiment logs|Checkpoint) directory .* is not empty")
        allocate_version(cfg)  # after 'last' was looked up: the new run's folder is empty

    def _instantiate_trainer(self, config: dict, callbacks: list):
        """The built-in callbacks adapt to ``--trainer.logger false`` (Lightning refuses a learning-rate monitor
        without a logger) and ``--trainer.enable_checkpointing false`` (and checkpoint callbacks without
        checkpointing): they are left out, said once."""
        root = config.get("default_root_dir") or "."
        notes = []
        if config.get("logger") is False:
            callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
            notes.append(f"--trainer.logger false: no metrics.csv, learning-rate monitor or learning curves; "
                         f"predictions, eval_results.json, checkpoints/ and export/ go directly into {root}")
        if config.get("enable_checkpointing") is False:
            callbacks = [cb for cb in callbacks if not isinstance(cb, Checkpoint)]
            notes.append("--trainer.enable_checkpointing false: no checkpoints (no best by val/f1, no last.ckpt; "
                         "Ctrl-C and SIGTERM stop without saving); the export holds the final weights")
        if notes and launch_rank_zero():
            print("\n".join(notes), file=sys.stderr)
        return super()._instantiate_trainer(config, [*callbacks, LearningCurves()])

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        if self._ckpt is not None:
            cfg = self.config[self.subcommand]
            check_weights_fit(self.model, self._ckpt, str(cfg.ckpt_path))
            step = training_state(self._ckpt)[0]
            self._ckpt = None  # memory-mapped tensors: let them go before Lightning loads the file
            ckpt = Path(cfg.ckpt_path).resolve()
            if self.subcommand == "fit" and ckpt.parent.name == "checkpoints" and self.trainer.is_global_zero:
                # One metrics.csv for the whole run: the earlier rows before the resumed step come along.
                rows = carry_metrics_history(self.trainer, ckpt.parent.parent / "metrics.csv", step)
                if self._continued or rows:
                    where = (f"continuing the run in {self._continued}" if self._continued else
                             f"{rows} metrics.csv rows of {ckpt.parent.parent} carried over into this run's folder")
                    print(f"fit --ckpt_path: {where} (metrics before step {step} kept)", file=sys.stderr)


def _step(row: dict) -> float:
    try:
        return float(row.get("step", "nan"))
    except ValueError:
        return float("nan")


def carry_metrics_history(trainer: L.Trainer, source: Path, step: int) -> int:
    """Hand the rows of an earlier ``metrics.csv`` logged before ``step`` (the resumed checkpoint's global step) to
    this run's CSV logger and write them at once; returns how many. Rows from ``step`` on are dropped: the resumed
    run logs them again. Call before the logger opens its folder (Lightning's CSV logger deletes a ``metrics.csv``
    it finds there), on rank 0."""
    csv_loggers = [lg for lg in trainer.loggers if isinstance(lg, CSVLogger)]
    if not source.is_file() or not csv_loggers:
        return 0
    with open(source, newline="") as fh:
        rows = [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]
    kept = [row for row in rows if _step(row) < step]  # a row's step is the optimizer step before its batch's
    for lg in csv_loggers:
        lg.experiment.metrics[:0] = kept
        lg.save()
    return len(kept)


def main(args: list[str] | None = None) -> QACLI:
    """Run ``fit|validate|test|predict`` (``args``: the command line without the program; None: ``sys.argv``), the
    way ``__main__.main`` and in-process runs do; returns the CLI. User errors: one ``error:`` line, exit status 2."""
    env_defaults()
    prog = "qa-lightning" if sys.argv[0].endswith("qa-lightning") else "python -m qa_lightning"  # not __main__.py
    about = sys.modules[__package__].__doc__.splitlines()[0]  # the package's one-line description
    with user_errors():
        return QACLI(QAModule, SquadDataModule, seed_everything_default=42, save_config_kwargs={"overwrite": True},
                     parser_kwargs={"prog": prog, "description": about}, args=args)
