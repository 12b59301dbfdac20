"""Callbacks the CLI always adds: export (with model card) and hub push, learning curves (crash_safety.py: last.ckpt).

    python -m qa_lightning fit --export.hub_model_id me/bert-squad     # background upload at each validation end
    python -m qa_lightning fit --export.dirpath my_model               # where the best model is exported

Hub pushes run on a background thread with ``huggingface_hub``: training never waits for the network, and a failed
push is a warning, not a crash. Everything here acts on global rank 0 only.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import platform
import shutil
import sys
import time
import warnings
from typing import Any, Callable, Optional

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from .export import RUN_KEY, export_checkpoint, run_metadata, save_hf_directory
from .files import atomic_path
from .plots import plot_learning_curves

__all__ = ["ExportCallback", "LearningCurves", "HubPusher", "AtomicCheckpointIO"]

log = logging.getLogger(__name__)


class HubPusher:
    """Uploads folders to a hub model repo on one background thread; failures become warnings.

    Args:
        repo_id: ``user/name`` of the model repo (created if missing, private by default).
        private: create the repo private.
        client_factory: returns an object with ``create_repo`` and ``upload_folder`` (``huggingface_hub.HfApi``);
            tests pass a stand-in.
    """

    def __init__(self, repo_id: str, private: bool = True, client_factory: Optional[Callable[[], Any]] = None):
        self.repo_id = repo_id
        self.private = private
        self.client_factory = client_factory or _hf_api
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-push")
        self._client = None
        self.futures: list[concurrent.futures.Future] = []

    def _upload(self, folder: str, message: str, cleanup: bool) -> str:
        try:
            if self._client is None:
                self._client = self.client_factory()
                self._client.create_repo(self.repo_id, private=self.private, exist_ok=True)
            self._client.upload_folder(repo_id=self.repo_id, folder_path=folder, commit_message=message)
            log.info("pushed %s to the hub as %s", folder, self.repo_id)
            return "ok"
        except Exception as err:  # network, auth, quota: never fatal for training
            warnings.warn(f"hub push to {self.repo_id} failed ({type(err).__name__}: {err}); training goes on")
            return f"failed: {err}"
        finally:
            if cleanup:
                shutil.rmtree(folder, ignore_errors=True)

    def push(self, folder: str, message: str, cleanup: bool = False) -> concurrent.futures.Future:
        fut = self._pool.submit(self._upload, folder, message, cleanup)
        self.futures.append(fut)
        return fut

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)


def _hf_api():
    from huggingface_hub import HfApi

    return HfApi()


def hardware(trainer: L.Trainer) -> str:
    """What the run trained on, for the model card: GPU name x count, or the CPU and its core count."""
    if trainer.strategy.root_device.type == "cuda":
        return f"{trainer.world_size} x {torch.cuda.get_device_name(trainer.strategy.root_device)}"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            name = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), name)
    except OSError:
        pass
    return f"CPU ({name}, {os.cpu_count()} cores), {trainer.world_size} process(es)"


class ExportCallback(Callback):
    """Exports the best checkpoint as a HF directory (with ``qa_lightning.json`` and a model card) at the end of
    ``fit``; optionally pushes to the hub. Every checkpoint carries what the card needs (``qa_lightning_run``: the
    latest validation metrics and their step, data sizes, training time, hardware), so an export made later from
    any checkpoint describes the weights it holds.

    Args:
        dirpath: export directory (None: ``<log dir>/export``).
        hub_model_id: hub repo (``user/name``) to push to at each validation end and after fit; None: no push.
        hub_private: create the hub repo private.
        client_factory: hub client maker (tests inject a stand-in; default ``huggingface_hub.HfApi``).
    """

    def __init__(self, dirpath: Optional[str] = None, hub_model_id: Optional[str] = None, hub_private: bool = True,
                 client_factory: Optional[Callable[[], Any]] = None):
        self.dirpath = dirpath
        self.hub_model_id = hub_model_id
        self.hub_private = hub_private
        self.client_factory = client_factory
        self.pusher: Optional[HubPusher] = None
        self.exported: Optional[str] = None
        self._t0 = time.monotonic()
        self._prior_seconds = 0.0  # training time of the sessions before a resume
        self._eval_at: Optional[tuple[int, int]] = None  # (step, epoch) of the latest fit validation

    def _dir(self, trainer: L.Trainer) -> str:
        return self.dirpath or os.path.join(trainer.log_dir or trainer.default_root_dir, "export")

    def _seconds(self) -> float:
        return self._prior_seconds + time.monotonic() - self._t0

    def _run_info(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        """The facts about this run that the model card reports (stored in every checkpoint)."""
        info = {"train_seconds": round(self._seconds(), 1), "hardware": hardware(trainer),
                "precision": str(trainer.precision), "devices": trainer.world_size, "max_epochs": trainer.max_epochs,
                "max_steps": trainer.max_steps if trainer.max_steps != -1 else None,
                "accumulate_grad_batches": trainer.accumulate_grad_batches, "hub_model_id": self.hub_model_id,
                "data_sizes": dict(getattr(trainer.datamodule, "reports", None) or {})}
        latest = getattr(pl_module, "last_eval", {}).get("validation")
        if latest and latest.get("metrics") and self._eval_at is not None:
            info["metrics"] = {"split": "validation", "step": self._eval_at[0], "epoch": self._eval_at[1],
                               "examples": len(latest.get("predictions") or {}), **latest["metrics"]}
        return info

    def _metadata(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        dm = trainer.datamodule
        return run_metadata(pl_module.hparams, getattr(dm, "hparams", {}), self._run_info(trainer, pl_module),
                            epoch=trainer.current_epoch, global_step=trainer.global_step)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.hub_model_id and trainer.is_global_zero and self.pusher is None:
            self.pusher = HubPusher(self.hub_model_id, self.hub_private, self.client_factory)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.monotonic()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[RUN_KEY] = self._run_info(trainer, pl_module)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._prior_seconds = float((checkpoint.get(RUN_KEY) or {}).get("train_seconds") or 0.0)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._eval_at = (trainer.global_step, trainer.current_epoch)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.hub_model_id or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        base = self._dir(trainer)  # collective (log_dir broadcasts): every rank asks
        if self.pusher is None:  # not rank 0
            return
        # Snapshot the current weights (fast, local), upload in the background, delete the snapshot after.
        snap = f"{base}-step{trainer.global_step}"
        save_hf_directory(pl_module.model, trainer.datamodule.tokenizer, snap, self._metadata(trainer, pl_module))
        self.pusher.push(snap, f"epoch {trainer.current_epoch}, step {trainer.global_step}", cleanup=True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        out = self._dir(trainer)  # log_dir is collective: ask on every rank
        if not trainer.is_global_zero:
            return
        if trainer.fast_dev_run:  # a smoke test: Lightning writes no checkpoint then, and no export is made either
            print("fast_dev_run: no export (as Lightning writes no checkpoints in this mode)", file=sys.stderr)
            return
        best = ""
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.best_model_path and os.path.isfile(cb.best_model_path):
                best = cb.best_model_path
                break
        if best:  # the checkpoint's own metrics; the training time is the whole run's
            self.exported = export_checkpoint(best, out, run={"train_seconds": round(self._seconds(), 1),
                                                              "hub_model_id": self.hub_model_id})
        else:  # no validation ran: export the final weights
            self.exported = save_hf_directory(pl_module.model, trainer.datamodule.tokenizer, out,
                                              self._metadata(trainer, pl_module))
        print(f"Exported {'best checkpoint ' + os.path.basename(best) if best else 'final model'} to {out}")
        if self.pusher is not None:
            self.pusher.push(out, "end of training")
            self.pusher.close(wait=False)


class LearningCurves(Callback):
    """Writes ``learning_curves.png`` (train loss and validation EM/F1 against optimizer steps) beside the CSV
    logs after ``fit``.

    Args:
        enabled: set False to skip the plot.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.path: Optional[str] = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir
        if not self.enabled or not trainer.is_global_zero or not log_dir:
            return
        for lg in trainer.loggers:  # make sure the CSV is complete before reading it
            lg.save()
        csv_path = os.path.join(log_dir, "metrics.csv")
        if os.path.isfile(csv_path):
            self.path = plot_learning_curves(csv_path, os.path.join(log_dir, "learning_curves.png"))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint beside ``<path>``, fsyncs it, then renames it over ``<path>`` (``files.atomic_path``).

    A crash (or SIGKILL) while saving leaves the previous ``last.ckpt`` intact instead of a truncated file.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        with atomic_path(str(path)) as tmp, open(tmp, "wb") as fh:
            torch.save(checkpoint, fh)
