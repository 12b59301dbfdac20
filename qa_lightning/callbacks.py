"""Callbacks the CLI always adds: export the best model for ``pipeline``, push it to the hub, plot learning curves.

    python -m qa_lightning fit --export.hub_model_id me/bert-squad     # background upload at each validation end
    python -m qa_lightning fit --export.dirpath my_model               # where the best model is exported

Hub pushes run on a background thread with ``huggingface_hub``: training never waits for the network, and a failed
push is a warning, not a crash. Everything here acts on global rank 0 only.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import warnings
from typing import Any, Callable, Optional

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from .export import export_checkpoint, save_hf_directory
from .plots import plot_learning_curves

__all__ = ["ExportCallback", "LearningCurves", "HubPusher"]

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


class ExportCallback(Callback):
    """Exports the best checkpoint as a HF directory at the end of ``fit``; optionally pushes to the hub.

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

    def _dir(self, trainer: L.Trainer) -> str:
        return self.dirpath or os.path.join(trainer.log_dir or trainer.default_root_dir, "export")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.hub_model_id and trainer.is_global_zero and self.pusher is None:
            self.pusher = HubPusher(self.hub_model_id, self.hub_private, self.client_factory)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.hub_model_id or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        base = self._dir(trainer)  # collective (log_dir broadcasts): every rank asks
        if self.pusher is None:  # not rank 0
            return
        # Snapshot the current weights (fast, local), upload in the background, delete the snapshot after.
        snap = f"{base}-step{trainer.global_step}"
        save_hf_directory(pl_module.model, trainer.datamodule.tokenizer, snap,
                          {"epoch": trainer.current_epoch, "global_step": trainer.global_step})
        self.pusher.push(snap, f"epoch {trainer.current_epoch}, step {trainer.global_step}", cleanup=True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        out = self._dir(trainer)  # log_dir is collective: ask on every rank
        if not trainer.is_global_zero:
            return
        best = ""
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.best_model_path and os.path.isfile(cb.best_model_path):
                best = cb.best_model_path
                break
        if best:
            self.exported = export_checkpoint(best, out)
        else:  # no validation ran: export the final weights
            self.exported = save_hf_directory(pl_module.model, trainer.datamodule.tokenizer, out,
                                              {"global_step": trainer.global_step})
        print(f"Exported {'best checkpoint ' + os.path.basename(best) if best else 'final model'} to {out}")
        if self.pusher is not None:
            self.pusher.push(out, "end of training")
            self.pusher.close(wait=False)


class LearningCurves(Callback):
    """Writes ``learning_curves.png`` (train loss, validation EM/F1 per epoch) beside the CSV logs after ``fit``.

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
