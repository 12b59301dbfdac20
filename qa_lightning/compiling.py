"""``torch.compile`` of the encoder (``--model.compile*``) and a report of what compiling cost, per batch shape.

    compile_encoder(model, mode="reduce-overhead", dynamic=False)   # in place: state_dict keys unchanged
    trainer = L.Trainer(callbacks=[CompileReport()])                 # QAModule adds it itself when compiling

What is captured is the encoder's forward and backward (the loss included); the optimizer step and gradient clipping
run eagerly after it. A CUDA graph ("reduce-overhead") is one shape: pair it with few shapes
(``--data.length_buckets auto``) and ``dynamic=False``.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any, Optional

import lightning as L
import torch

from .errors import QAInputError

log = logging.getLogger(__name__)

# Distinct (grad mode, batch size, length) combinations a run may compile: 2 stages x (buckets + short last batches).
RECOMPILE_LIMIT = 64


def check_compile_args(compile: bool, mode: Optional[str], backend: str, dynamic: Optional[bool]) -> None:
    """QAInputError for a compile option that cannot work (named as the CLI spells it)."""
    if not compile and (mode is not None or backend != "inductor" or dynamic is not None):
        raise QAInputError("--model.compile_mode/compile_backend/compile_dynamic need --model.compile true")
    if mode is not None:
        from torch._inductor import list_mode_options

        modes = sorted(list_mode_options())
        if mode not in modes:
            raise QAInputError(f"--model.compile_mode: unknown mode {mode!r}; one of {', '.join(modes)}")
        if backend != "inductor":
            raise QAInputError(f"--model.compile_mode {mode} needs --model.compile_backend inductor, got {backend}")
    if backend != "inductor":
        from torch import _dynamo

        backends = _dynamo.list_backends(exclude_tags=())
        if backend not in backends:
            raise QAInputError(f"--model.compile_backend: unknown backend {backend!r}; one of {', '.join(backends)}")


def compile_encoder(model: torch.nn.Module, mode: Optional[str] = None, backend: str = "inductor",
                    dynamic: Optional[bool] = None) -> None:
    """``model.compile(...)`` in place (checkpoints stay interchangeable with eager ones); the arguments are
    QAModule's ``compile_mode``, ``compile_backend`` and ``compile_dynamic``."""
    kwargs: dict[str, Any] = {"backend": backend, "dynamic": dynamic}
    if mode is not None:
        kwargs["mode"] = mode
    if "recompile_limit" in inspect.signature(torch.compile).parameters:  # torch >= 2.10: per-call limit
        kwargs["recompile_limit"] = RECOMPILE_LIMIT
    else:  # older torch: raise the global limit
        from torch import _dynamo

        _dynamo.config.cache_size_limit = max(_dynamo.config.cache_size_limit, RECOMPILE_LIMIT)
    model.compile(**kwargs)
    log.info("torch.compile(%s)", ", ".join(f"{k}={v!r}" for k, v in kwargs.items()))


class CompileReport(L.Callback):
    """Logs, once per (stage, batch shape), the time of its first (compilation), second (CUDA-graph capture) and a
    steady step, and ``one_off`` = first + second - 2 x steady, in ``self.shapes`` ({(stage, shape): {...}}).

    Args:
        mark_steps: call ``torch.compiler.cudagraph_mark_step_begin()`` before each batch (CUDA-graph modes: tells
            cudagraph trees a new iteration starts, so the previous step's outputs may be overwritten).
    """

    def __init__(self, mark_steps: bool = False):
        self.mark_steps = mark_steps
        self.shapes: dict[tuple, dict[str, float]] = {}
        self._timing: Optional[tuple] = None  # (key, what, t0) of the step being timed

    @staticmethod
    def _sync(module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def _start(self, stage: str, module: L.LightningModule, batch: Any) -> None:
        if self.mark_steps:
            torch.compiler.cudagraph_mark_step_begin()
        key = (stage, tuple(batch["input_ids"].shape))
        seen = self.shapes.setdefault(key, {"count": 0})
        seen["count"] += 1
        what = {1: "first", 2: "second", 3: "steady"}.get(int(seen["count"]))
        if what is not None:  # only the first three steps of a shape are timed (and synchronised)
            self._sync(module)
            self._timing = (key, what, time.perf_counter())

    def _end(self, module: L.LightningModule) -> None:
        if self._timing is None:
            return
        self._sync(module)
        key, what, t0 = self._timing
        self._timing = None
        info = self.shapes[key]
        info[what] = time.perf_counter() - t0
        if what == "first":
            log.info("compile: %s shape %s: first step %.2f s (compilation included)", key[0], key[1], info[what])
        elif what == "steady":
            info["one_off"] = info["first"] + info["second"] - 2 * info["steady"]
            log.info("compile: %s shape %s: one-off cost %.2f s (steps: first %.2f s, second %.2f s, then %.4f s)",
                     key[0], key[1], info["one_off"], info["first"], info["second"], info["steady"])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start("train", pl_module, batch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._end(pl_module)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._start("eval", pl_module, batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._end(pl_module)

    on_test_batch_start = on_predict_batch_start = on_validation_batch_start
    on_test_batch_end = on_predict_batch_end = on_validation_batch_end
