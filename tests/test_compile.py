"""Compiled training (qa_lightning/compiling.py, --model.compile*): same losses as eager, per-shape cost report.

CPU only here: backend "aot_eager" (dynamo + AOTAutograd, no code generation) in the quick test; inductor with
mode "reduce-overhead" (on a CPU inductor compiles C++ and skips the CUDA graphs) in the slow one. Dropout is 0 so
that eager and compiled runs draw no random numbers.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

import lightning as L
import pytest
import torch

from qa_lightning import QAModule, SquadDataModule
from qa_lightning.compiling import CompileReport, check_compile_args
from qa_lightning.errors import QAInputError
from conftest import TINY_BERT, TINY_DEV, TINY_TRAIN


def _fit(tmp_path, steps, **model_kw):
    torch.manual_seed(0)
    module = QAModule(model_name_or_path=str(TINY_BERT), pretrained=False, learning_rate=1e-3, dropout=0.0,
                      fused_adamw=True, **model_kw)
    dm = SquadDataModule(model_name_or_path=str(TINY_BERT), train_file=str(TINY_TRAIN), validation_file=str(TINY_DEV),
                         max_length=128, stride=32, batch_size=8, length_buckets=[64, 96, 128], max_eval_samples=8,
                         cache_dir=str(tmp_path / "cache"), num_workers=0)
    losses = []

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(accelerator="cpu", max_steps=steps, gradient_clip_val=1.0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, num_sanity_val_steps=0,
                        val_check_interval=steps, callbacks=[Probe()], default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    report = next((c for c in trainer.callbacks if isinstance(c, CompileReport)), None)
    return losses, module, report


def _check_same_losses_and_report(tmp_path, steps, weight_atol=1e-5, **compile_kw):
    eager, eager_module, none = _fit(tmp_path, steps)
    compiled, module, report = _fit(tmp_path, steps, compile=True, **compile_kw)
    assert none is None and report is not None  # the report comes with compiling only
    assert len(compiled) == steps
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-4, atol=1e-5)
    # Fused AdamW + our clipping ran in both: the weights after the last step agree too. (Adam moves a weight by
    # about lr whatever the size of its gradient, so rounding noise in a near-zero gradient can move it by ~lr.)
    for (name, a), b in zip(eager_module.model.named_parameters(), module.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=weight_atol, msg=name)
    train = {shape: info for (stage, shape), info in report.shapes.items() if stage == "train"}
    assert {shape[1] for shape in train} <= {64, 96, 128}
    assert sum(int(info["count"]) for info in train.values()) == steps
    assert all(info["first"] > 0 for info in train.values())
    assert any(stage == "eval" for stage, _ in report.shapes)  # the evaluation forward is compiled too
    assert all("one_off" in info for info in train.values() if info["count"] >= 3)
    assert module.results["validation"].predictions == eager_module.results["validation"].predictions


def test_compiled_training_gives_the_eager_losses(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="qa_lightning.compiling"):
        _check_same_losses_and_report(tmp_path, 6, compile_backend="aot_eager", compile_dynamic=False)
    assert "compile: train shape (8, " in caplog.text and "first step" in caplog.text


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("gcc") is None,
                    reason="inductor on CPU needs a C++ compiler")
def test_reduce_overhead_mode_gives_the_eager_losses(tmp_path):
    # inductor generates its own kernels (other summation orders): weights within a few Adam steps of lr 1e-3
    _check_same_losses_and_report(tmp_path, 6, weight_atol=3e-3, compile_mode="reduce-overhead", compile_dynamic=False)


def test_compile_option_errors():
    with pytest.raises(QAInputError, match="need --model.compile true"):
        check_compile_args(False, "reduce-overhead", "inductor", None)
    with pytest.raises(QAInputError, match="compile_mode: unknown mode 'fastest'"):
        check_compile_args(True, "fastest", "inductor", None)
    with pytest.raises(QAInputError, match="needs --model.compile_backend inductor"):
        check_compile_args(True, "reduce-overhead", "aot_eager", None)
    with pytest.raises(QAInputError, match="compile_backend: unknown backend"):
        check_compile_args(True, None, "no-such-backend", None)
    check_compile_args(True, "reduce-overhead", "inductor", False)  # accepted
    with pytest.raises(QAInputError, match="need --model.compile true"):
        QAModule(model_name_or_path=str(TINY_BERT), pretrained=False, compile_mode="reduce-overhead")


def test_cuda_allocator_setting_is_left_to_the_environment():
    code = ("import os, qa_lightning.module, qa_lightning.data.datamodule, qa_lightning.compiling, "
            "qa_lightning.packing; print(os.environ.get('PYTORCH_CUDA_ALLOC_CONF'))")
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_CUDA_ALLOC_CONF"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip().splitlines()[-1] == "None"
