"""ExportCallback: the best checkpoint exported as a Hugging Face folder with its model card after ``fit``; optional
hub pushes on a background thread (training never waits for the network; a failed push is a warning).
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
from typing import Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from .checkpoints import run_folder
from .export import RUN_KEY, export_checkpoint, run_metadata, save_hf_directory
from .precision import cpuinfo_field

log = logging.getLogger(__name__)


class HubPusher:
    """Uploads folders to a hub model repo on one background thread; failures become warnings.

    Args:
        repo_id: ``user/name`` of the model repo (created if missing).
        private: create the repo private.
    """

    def __init__(self, repo_id: str, private: bool = True):
        self.repo_id = repo_id
        self.private = private
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-push")
        self._client = None
        self.futures: list[concurrent.futures.Future] = []

    def _upload(self, folder: str, message: str, cleanup: bool) -> str:
        try:
            if self._client is None:
                self._client = hub_client()
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


def hub_client():
    """The hub client: ``huggingface_hub.HfApi`` (``create_repo``, ``upload_folder``); tests patch this."""
    from huggingface_hub import HfApi

    return HfApi()


def hardware(trainer: L.Trainer) -> str:
    """What the run trained on, for the model card: GPU name x count, or the CPU and its core count."""
    if trainer.strategy.root_device.type == "cuda":
        return f"{trainer.world_size} x {torch.cuda.get_device_name(trainer.strategy.root_device)}"
    name = cpuinfo_field("model name") or platform.processor() or platform.machine()
    return f"CPU ({name}, {os.cpu_count()} cores), {trainer.world_size} process(es)"


class ExportCallback(Callback):
    """Exports the best checkpoint (else the final weights) with ``qa_lightning.json`` and a model card at the end of
    ``fit``. Every checkpoint carries what the card needs (``qa_lightning_run``: the latest validation metrics and
    their step, data sizes, training time, hardware), so an export made later describes the weights it holds.

    Args:
        dirpath: export directory (None: ``<log dir>/export``).
        hub_model_id: hub repo (``user/name``) to push to at each validation end and after fit; None: no push.
        hub_private: create the hub repo private.
    """

    def __init__(self, dirpath: Optional[str] = None, hub_model_id: Optional[str] = None, hub_private: bool = True):
        self.dirpath = dirpath
        self.hub_model_id = hub_model_id
        self.hub_private = hub_private
        self.pusher: Optional[HubPusher] = None
        self.exported: Optional[str] = None
        self._t0 = time.monotonic()
        self._prior_seconds = 0.0  # training time of the sessions before a resume
        self._eval_at: Optional[tuple[int, int]] = None  # (step, epoch) of the latest fit validation

    def _dir(self, trainer: L.Trainer) -> str:
        """Collective (``run_folder``): every rank asks."""
        return self.dirpath or run_folder(trainer, "export")

    def _seconds(self) -> float:
        return self._prior_seconds + time.monotonic() - self._t0

    def _run_info(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        """The facts about this run that the model card reports (stored in every checkpoint)."""
        info = {"train_seconds": round(self._seconds(), 1), "hardware": hardware(trainer),
                "precision": str(trainer.precision), "devices": trainer.world_size, "max_epochs": trainer.max_epochs,
                "max_steps": trainer.max_steps if trainer.max_steps != -1 else None,
                "accumulate_grad_batches": trainer.accumulate_grad_batches, "hub_model_id": self.hub_model_id,
                "data_sizes": dict(getattr(trainer.datamodule, "reports", None) or {})}
        latest = pl_module.results.get("validation")  # QAModule.results: the latest EvalResult of each split
        if latest is not None and latest.metrics and self._eval_at is not None:
            info["metrics"] = {"split": "validation", "step": self._eval_at[0], "epoch": self._eval_at[1],
                               "examples": len(latest.predictions), **latest.metrics}
        return info

    def _metadata(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        dm = trainer.datamodule
        return run_metadata(pl_module.hparams, getattr(dm, "hparams", {}), self._run_info(trainer, pl_module),
                            epoch=trainer.current_epoch, global_step=trainer.global_step)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.hub_model_id and trainer.is_global_zero and self.pusher is None:
            self.pusher = HubPusher(self.hub_model_id, self.hub_private)

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
        base = self._dir(trainer)
        if self.pusher is None:  # not rank 0
            return
        # Snapshot the current weights (fast, local), upload in the background, delete the snapshot after.
        snap = f"{base}-step{trainer.global_step}"
        save_hf_directory(pl_module.model, trainer.datamodule.tokenizer, snap, self._metadata(trainer, pl_module))
        self.pusher.push(snap, f"epoch {trainer.current_epoch}, step {trainer.global_step}", cleanup=True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        out = self._dir(trainer)
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
