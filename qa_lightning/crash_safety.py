"""Crash safety and exact resume: ``last.ckpt`` always holds the newest state (Ctrl-C and SIGTERM save it), written
atomically; a resumed run continues the same random streams and keeps its record.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
from typing import Any, Optional

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .checkpoints import reroot_record
from .files import atomic_path
from .resume import collect_rng_states, gather_rng_states, read_checkpoint, set_rng_states

log = logging.getLogger(__name__)

CTRL_C_STATUS = 130  # what a shell reports for a command ended by Ctrl-C (128 + SIGINT)


def resume_command(argv: Optional[list[str]] = None) -> str:
    """The command that resumes this run: the user's own ``fit`` options with ``--ckpt_path last``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["fit"]:  # run in process (cli.main(args)): the options are not in sys.argv
        return "python -m qa_lightning fit ... --ckpt_path last"
    kept, skip = [], False
    for arg in argv[1:]:
        if skip or arg.startswith("--ckpt_path="):
            skip = False
            continue
        skip = arg == "--ckpt_path"
        if not skip:
            kept.append(arg)
    return shlex.join(["python", "-m", "qa_lightning", "fit", *kept, "--ckpt_path", "last"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint beside ``<path>``, fsyncs it, then renames it over ``<path>`` (``files.atomic_path``):
    a crash while saving leaves the previous ``last.ckpt`` intact instead of a truncated file."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        with atomic_path(str(path)) as tmp, open(tmp, "wb") as fh:
            torch.save(checkpoint, fh)


class ExactResume(Callback):
    """Saves what Lightning's checkpoint lacks for an exact resume and puts it back at the first resumed batch: every
    rank's RNG states (dropout draws from them) and the module's running epoch loss (``QAModule.epoch_loss`` and
    ``epoch_samples``: a run resumed mid-epoch logs the whole epoch's mean). ``QAModule.configure_callbacks`` adds it.
    """

    def __init__(self) -> None:
        self._rng: Optional[dict] = None  # this rank's saved RNG states, until the first resumed batch
        self._loss: Optional[dict] = None  # {"epoch", "sum", "n"} of the saved running loss

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["qa_lightning_rng"] = states = collect_rng_states()
        if trainer.world_size > 1:  # every rank's own stream (collective: every rank saves together)
            checkpoint["qa_lightning_rng_ranks"] = gather_rng_states(states)
        if pl_module.epoch_samples:
            checkpoint["qa_lightning_epoch_loss"] = {"epoch": trainer.current_epoch, "n": pl_module.epoch_samples,
                                                     "sum": float(pl_module.epoch_loss)}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        ranks = checkpoint.get("qa_lightning_rng_ranks") or []
        same_world = len(ranks) == trainer.world_size > 1
        self._rng = ranks[trainer.global_rank] if same_world else checkpoint.get("qa_lightning_rng")
        self._loss = checkpoint.get("qa_lightning_epoch_loss")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # As late as possible: anything before the first resumed step may have drawn random numbers.
        if self._rng is not None:
            set_rng_states(self._rng)
        loss, self._rng, self._loss = self._loss, None, None
        if loss and loss["epoch"] == trainer.current_epoch:  # resumed mid-epoch: continue the epoch's sum
            pl_module.epoch_loss = torch.tensor(loss["sum"], device=pl_module.device)
            pl_module.epoch_samples = int(loss["n"])


def _carry_checkpoint(src: str, dst: str) -> None:
    """Copy a checkpoint of the resumed run into this run's folder (read safely, written atomically)."""
    AtomicCheckpointIO().save_checkpoint(read_checkpoint(src), dst)


class CrashSafety(Checkpoint):
    """Owns ``last.ckpt``, always the newest state: every epoch end (after its validation and the best-checkpoint
    update), every N steps, on Ctrl-C, on SIGTERM and at the end of fit. Atomic writes.

    Lightning's ``save_last`` writes "last" only when a top-k checkpoint was saved at that step and versions the name
    (``last-v1.ckpt``) when another writer made it, so it is switched off on the checkpoint callbacks here. A
    resumed run whose folder was copied or moved gets its best-checkpoint record re-rooted
    (``checkpoints.reroot_record``), so the export at the end is the best of the whole run. Being a ``Checkpoint``
    callback, it runs after the other callbacks' hooks: ModelCheckpoint's best-model record is current when it saves.

    Args:
        every_n_train_steps: also write ``last.ckpt`` every N optimizer steps (None: epoch ends and end of fit).
        save_on_sigterm: on SIGTERM, finish the current batch, write ``last.ckpt`` and exit with status 0.
        save_on_ctrl_c: on Ctrl-C (SIGINT), finish the current training batch (a validation in progress finishes
            first), write ``last.ckpt``, print how to resume and exit with status 130; a second Ctrl-C aborts.
    """

    def __init__(self, every_n_train_steps: Optional[int] = None, save_on_sigterm: bool = True,
                 save_on_ctrl_c: bool = True):
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ValueError(f"--crash_safety.every_n_train_steps must be >= 1, got {every_n_train_steps}")
        self.every_n_train_steps = every_n_train_steps
        self.save_on_sigterm = save_on_sigterm
        self.save_on_ctrl_c = save_on_ctrl_c
        self._saved_step = -1
        self._ctrl_c = False  # set by the SIGINT handler
        self._interrupted = False  # last.ckpt was written for a Ctrl-C: leave with status 130
        self._old_handler: Any = None
        self._rank_zero = True  # whether the SIGINT handler may write to the terminal

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.save_last:
                cb.save_last = False  # last.ckpt is ours (see the class docstring)

    def _path(self, trainer: L.Trainer) -> str:
        cb = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
        dirpath = cb.dirpath if cb is not None and cb.dirpath else os.path.join(trainer.default_root_dir, "checkpoints")
        return os.path.join(dirpath, "last.ckpt")

    def _save(self, trainer: L.Trainer, why: str) -> None:
        if trainer.fast_dev_run:
            return
        path = self._path(trainer)
        trainer.save_checkpoint(path)  # collective under DDP: every rank gets here together
        self._saved_step = trainer.global_step
        if trainer.is_global_zero:
            log.info("%s: saved %s at step %d", why, path, trainer.global_step)

    # ------------------------------------------------------------------------------------------- Ctrl-C
    def _on_ctrl_c(self, signum: int, frame: Any) -> None:
        if self._ctrl_c:  # the second Ctrl-C: abort now (Lightning's KeyboardInterrupt path), nothing saved
            raise KeyboardInterrupt
        self._ctrl_c = True
        if self._rank_zero:  # os.write: print() is not safe inside a signal handler
            os.write(2, b"\nCtrl-C: stopping after the current training batch and saving last.ckpt "
                        b"(Ctrl-C again aborts at once, without saving)\n")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ctrl_c = self._interrupted = False
        if self.save_on_ctrl_c and threading.current_thread() is threading.main_thread():
            self._rank_zero = trainer.is_global_zero
            self._old_handler = signal.signal(signal.SIGINT, self._on_ctrl_c)

    def _restore_handler(self) -> None:
        if self._old_handler is not None:
            signal.signal(signal.SIGINT, self._old_handler)
            self._old_handler = None

    def _ctrl_c_agreed(self, trainer: L.Trainer) -> bool:
        if not self.save_on_ctrl_c:
            return False
        if trainer.world_size > 1:  # every rank stops after the same batch: a Ctrl-C on any rank counts
            return bool(trainer.strategy.reduce_boolean_decision(self._ctrl_c, all=False))
        return self._ctrl_c

    def _stop_on_ctrl_c(self, trainer: L.Trainer) -> None:
        self._save(trainer, "Ctrl-C")
        self._interrupted = True
        if trainer.is_global_zero:
            print(f"Interrupted (Ctrl-C): saved {self._path(trainer)} at global step {trainer.global_step} "
                  f"(epoch {trainer.current_epoch}); resume with: {resume_command()}", file=sys.stderr, flush=True)
        # Leave through Lightning's SIGTERM exit after this batch (its step is logged first); status: on_exception.
        trainer._signal_connector.received_sigterm = True

    # ------------------------------------------------------------------------------------------- hooks
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self._ctrl_c_agreed(trainer):
            self._ctrl_c = True  # every rank (DDP)
            # The epoch's last batch: its validation and epoch-end save run first, the next batch stops (a state
            # saved between the last batch and the validation would make Lightning skip that validation on resume).
            ends = batch_idx + 1 >= trainer.num_training_batches or 0 < trainer.max_steps <= step
            if not ends:
                self._stop_on_ctrl_c(trainer)
        elif self.save_on_sigterm and trainer.received_sigterm and trainer.world_size == 1:
            self._save(trainer, "SIGTERM")
            print(f"SIGTERM received: saved {self._path(trainer)} at step {step}; exiting", file=sys.stderr)
        elif self.every_n_train_steps and step % self.every_n_train_steps == 0 and step != self._saved_step:
            self._save(trainer, "step checkpoint")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the epoch's validation and ModelCheckpoint's save; always, even when a step checkpoint has this
        # global step (that one was written before the validation).
        if not trainer.sanity_checking and trainer.global_step > 0:
            self._save(trainer, "epoch end")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handler()
        if self._ctrl_c and trainer.is_global_zero:
            print("Ctrl-C came after the last training batch: the run is complete", file=sys.stderr)
        if trainer.global_step > 0 and trainer.global_step != self._saved_step:  # max_steps mid-epoch, etc.
            self._save(trainer, "end of fit")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handler()
        if not isinstance(exception, SIGTERMException):
            return
        if self._interrupted:
            exception.code = CTRL_C_STATUS  # the exit status of the SystemExit Lightning re-raises
        elif self.save_on_sigterm and trainer.world_size > 1 and trainer.global_step != self._saved_step:
            # Under DDP Lightning agrees on SIGTERM across ranks at the start of a step and raises on all of them.
            self._save(trainer, "SIGTERM")

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # Runs before the callbacks' load_state_dict: ModelCheckpoint then finds its own dirpath in the record.
        for cb in trainer.checkpoint_callbacks:
            if not isinstance(cb, ModelCheckpoint) or not cb.dirpath:
                continue
            state = (checkpoint.get("callbacks") or {}).get(cb.state_key) or {}
            if state.get("dirpath") not in (None, cb.dirpath):
                copy = _carry_checkpoint if trainer.is_global_zero else None
                for note in reroot_record(state, str(cb.dirpath), copy):
                    print(note, file=sys.stderr)
