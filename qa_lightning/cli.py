"""The command line: ``python -m qa_lightning fit|validate|test|predict`` through one LightningCLI subclass.

    python -m qa_lightning fit                                   # reference recipe: bert-base-cased, SQuAD v1.1
    python -m qa_lightning fit --config configs/debug.yaml       # tiny model, tiny data, CPU, < 1 minute
    python -m qa_lightning validate --config configs/debug.yaml --ckpt_path last
    python -m qa_lightning fit --print_config                    # every option with its value

What this subclass adds to LightningCLI:
- ``model.model_name_or_path`` is linked to ``data.model_name_or_path``: the tokenizer always matches the model.
- ``trainer.precision`` left unset means bf16 mixed precision on GPUs that support it, fp16 mixed on older GPUs,
  fp32 on CPU.
- Checkpoints every epoch keeping the best by ``val/f1`` plus ``last.ckpt``; CSV logs under ``lightning_logs/``;
  after ``fit`` the best model is exported for ``transformers.pipeline`` (``--export.*``, optional hub push) and
  ``learning_curves.png`` is drawn from the CSV log (``--curves.enabled``).
- ``configs/squad_bert_base_cased.yaml`` is the default config when the repository checkout is present (the code
  defaults are the same recipe, so an installed package behaves identically).
- User mistakes (missing files, malformed data, no network for the hub) end with one ``error:`` line, exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from .callbacks import CrashSafety, ExportCallback, LearningCurves
from .data.datamodule import SquadDataModule
from .errors import QAInputError
from .module import QAModule
from .resume import find_last_checkpoint

__all__ = ["QACLI", "main", "DEFAULT_CONFIG", "TRAINER_DEFAULTS", "PARSER_DEFAULTS", "run_folders"]

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "squad_bert_base_cased.yaml"

TRAINER_DEFAULTS = {"max_epochs": 3, "gradient_clip_val": 1.0}  # the recipe's Trainer clips at max_grad_norm=1.0

# Set through the parser (not trainer_defaults) so --print_config shows them and flags can change them.
PARSER_DEFAULTS = {
    "trainer.logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "."}},
    "checkpoint.monitor": "val/f1",
    "checkpoint.mode": "max",
    "checkpoint.save_last": True,
    "checkpoint.save_top_k": 1,
    "checkpoint.filename": "epoch{epoch}-f1{val/f1:.2f}",
    "checkpoint.auto_insert_metric_name": False,
    "lr_monitor.logging_interval": "step",
}


def auto_precision(accelerator: object) -> str | None:
    """bf16-mixed on GPUs with bf16, 16-mixed on other GPUs, None (fp32) on CPU."""
    wants_gpu = accelerator in (None, "auto", "gpu", "cuda") and torch.cuda.is_available()
    if not wants_gpu:
        return None
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


class QACLI(LightningCLI):
    """LightningCLI for QAModule + SquadDataModule (see the module docstring)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.model_name_or_path", "data.model_name_or_path")
        # Always-on callbacks, configurable as --checkpoint.* and --lr_monitor.*
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(ExportCallback, "export")
        parser.add_lightning_class_args(LearningCurves, "curves")
        parser.add_lightning_class_args(CrashSafety, "crash_safety")
        parser.set_defaults(PARSER_DEFAULTS)

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.trainer.get("precision") is None:
            cfg.trainer.precision = auto_precision(cfg.trainer.get("accelerator"))
        ckpt = cfg.get("ckpt_path")
        if ckpt not in (None, "last", "best", "hpc", "registry") and not os.path.isfile(str(ckpt)):
            raise QAInputError(f"--ckpt_path: {ckpt}: no such checkpoint file (or use 'last' to resume the newest run)")
        if ckpt == "last":
            found = find_last_checkpoint(run_folders(cfg))
            if found:
                print(f"Resuming from {found}", file=sys.stderr)
                cfg.ckpt_path = found
            elif self.subcommand != "fit":
                raise QAInputError("--ckpt_path last: no last.ckpt found under the run directories; pass a path")


def run_folders(cfg) -> list[Path]:
    """Where earlier runs of this config keep checkpoints: each run logs to a new version folder, so Lightning's own
    "last" (which looks in the *new* run's folder) would silently start from scratch."""
    roots = []
    if cfg.get("checkpoint") and cfg.checkpoint.get("dirpath"):
        roots.append(Path(cfg.checkpoint.dirpath))
    logger = cfg.trainer.get("logger")
    init = logger.get("init_args", {}) if hasattr(logger, "get") else {}
    if init:
        save_dir = init.get("save_dir") or cfg.trainer.get("default_root_dir") or "."
        roots.append(Path(save_dir) / (init.get("name") or "lightning_logs"))
    # Lightning's own places under the root dir -- not the whole root, which may be the repository with a venv in it
    base = Path(cfg.trainer.get("default_root_dir") or ".")
    return roots + [base / "lightning_logs", base / "checkpoints"]


def _parser_kwargs() -> dict:
    defaults = [str(DEFAULT_CONFIG)] if DEFAULT_CONFIG.is_file() else []
    return {cmd: {"default_config_files": defaults} for cmd in ("fit", "validate", "test", "predict")}


def main(args: list[str] | None = None) -> QACLI:
    """Run the CLI and return it; user errors become one line on stderr and exit status 2."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["ask"]:  # answering questions needs no Lightning CLI (qa_lightning/ask.py)
        from .ask import main as ask_main

        return ask_main(argv[1:])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # loaders fork after the tokenizer ran
    try:
        return QACLI(QAModule, SquadDataModule, trainer_defaults=TRAINER_DEFAULTS, seed_everything_default=42,
              parser_kwargs=_parser_kwargs(), save_config_kwargs={"overwrite": True}, args=args)
    except QAInputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
