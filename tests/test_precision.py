"""The automatic precision (qa_lightning/precision.py): bf16-mixed on CPUs with native bf16 matrix instructions,
fp32 on other CPUs, the GPU rule unchanged, an explicit ``--trainer.precision`` always wins; inference follows it."""

from __future__ import annotations

import types

import pytest
import torch

from conftest import TINY_BERT, TINY_DEV, TINY_TRAIN
from qa_lightning import precision


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _cpu(monkeypatch, isa: str) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_isa", lambda: isa)


@pytest.mark.parametrize("accelerator", [None, "auto", "cpu"])
def test_a_cpu_without_bf16_instructions_trains_in_fp32(monkeypatch, no_gpu, accelerator, capsys):
    _cpu(monkeypatch, "")
    assert precision.auto_precision(accelerator) is None  # Lightning's default, 32-true
    assert "precision: 32-true, chosen because the CPU has no native bf16" in capsys.readouterr().err


@pytest.mark.parametrize("isa", ["avx512_bf16", "amx_bf16"])
def test_a_cpu_with_bf16_instructions_trains_in_bf16_mixed(monkeypatch, no_gpu, isa, capsys):
    _cpu(monkeypatch, isa)
    assert precision.auto_precision("auto") == "bf16-mixed"
    assert f"precision: bf16-mixed, chosen because the CPU has {isa}" in capsys.readouterr().err


def test_the_gpu_rule_is_unchanged(monkeypatch):
    _cpu(monkeypatch, "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for bf16, expected in ((True, "bf16-mixed"), (False, "16-mixed")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda bf16=bf16: bf16)
        for accelerator in (None, "auto", "gpu", "cuda"):
            assert precision.choose_precision(accelerator)[0] == expected
    assert precision.choose_precision("cpu")[0] is None  # a CPU run on a GPU machine follows the CPU rule
    assert precision.choose_precision("mps")[0] is None  # other accelerators: Lightning's default


def test_only_rank_zero_says_which(monkeypatch, no_gpu, capsys):
    _cpu(monkeypatch, "avx512_bf16")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert precision.auto_precision("cpu") == "bf16-mixed"
    assert capsys.readouterr().err == ""


def test_the_capability_comes_from_torch_or_else_proc_cpuinfo(monkeypatch, tmp_path):
    caps = {"avx512_bf16": False, "amx_bf16": True, "avx2": True}
    monkeypatch.setattr(torch, "cpu", types.SimpleNamespace(get_capabilities=lambda: caps))
    assert precision.cpu_bf16_isa() == "amx_bf16"
    caps["amx_bf16"] = False
    assert precision.cpu_bf16_isa() == ""
    # Older torch: the private checks
    monkeypatch.setattr(torch, "cpu", types.SimpleNamespace(_is_amx_tile_supported=lambda: False,
                                                            _is_avx512_bf16_supported=lambda: True))
    assert precision.cpu_bf16_isa() == "avx512_bf16"
    # No check in this torch: the kernel's flags
    monkeypatch.setattr(torch, "cpu", types.SimpleNamespace())
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\nbugs\t\t: none\n")
    monkeypatch.setattr(precision, "CPUINFO", str(info))
    assert precision.cpu_bf16_isa() == "avx512_bf16"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert precision.cpu_bf16_isa() == ""
    monkeypatch.setattr(precision, "CPUINFO", str(tmp_path / "missing"))
    assert precision.cpu_bf16_isa() == ""


def _trainer_precision(args: list[str], tmp_path) -> str:
    """The precision of the Trainer the CLI builds (instantiated, not run) for the debug-sized model and data."""
    from qa_lightning.cli import QACLI
    from qa_lightning.data.datamodule import SquadDataModule
    from qa_lightning.module import QAModule

    cli = QACLI(QAModule, SquadDataModule, run=False, args=[
        "--model.model_name_or_path", str(TINY_BERT), "--model.pretrained", "false",
        "--data.train_file", str(TINY_TRAIN), "--data.validation_file", str(TINY_DEV),
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.logger", "false",
        "--trainer.default_root_dir", str(tmp_path), "--data.cache_dir", str(tmp_path / "cache"), *args])
    return str(cli.trainer.precision)


def test_the_cli_uses_the_automatic_precision_and_an_explicit_one_wins(monkeypatch, no_gpu, tmp_path):
    _cpu(monkeypatch, "avx512_bf16")
    assert _trainer_precision([], tmp_path) == "bf16-mixed"
    assert _trainer_precision(["--trainer.precision", "32-true"], tmp_path) == "32-true"
    _cpu(monkeypatch, "")
    assert _trainer_precision([], tmp_path) == "32-true"
    assert _trainer_precision(["--trainer.precision", "bf16-mixed"], tmp_path) == "bf16-mixed"


def test_inference_follows_the_same_rule(monkeypatch, no_gpu):
    """QAModel (ask, the Python API) autocasts to bf16 exactly where training's automatic precision is bf16-mixed,
    so that it answers as ``predict`` does."""
    from qa_lightning import infer
    from qa_lightning.hf import build_model, load_tokenizer

    model, tok = build_model(str(TINY_BERT), pretrained=False), load_tokenizer(str(TINY_BERT))
    for isa in ("", "avx512_bf16", "amx_bf16"):
        _cpu(monkeypatch, isa)
        training = precision.choose_precision("auto")[0]
        assert infer.QAModel(model, tok).bf16 is (training == "bf16-mixed")  # autocast in QAModel._logits


def _gpu(monkeypatch, major: int) -> None:
    """A CUDA machine as torch sees it: one GPU of compute capability ``major``.0 that can hold bf16 tensors (every
    CUDA GPU torch supports can, V100 and T4 included: their bf16 arithmetic is emulated). torch's own
    ``is_bf16_supported`` answers from these facts."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: types.SimpleNamespace(major=major))
    if hasattr(torch.cuda, "_check_bf16_tensor_supported"):
        monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)
    monkeypatch.setattr(torch.version, "hip", None)


@pytest.mark.parametrize("major, expected", [(7, "16-mixed"), (8, "bf16-mixed"), (9, "bf16-mixed")])
def test_gpus_without_native_bf16_get_fp16_mixed(monkeypatch, capsys, major, expected):
    """V100/T4 (7.x) get fp16 mixed although torch can store bf16 tensors there; A100 (8.0) and H100/H200 (9.0) get
    bf16 mixed; the CPU's bf16 instructions play no part when the GPU is used."""
    _cpu(monkeypatch, "avx512_bf16")
    _gpu(monkeypatch, major)
    for accelerator in (None, "auto", "gpu", "cuda"):
        assert precision.auto_precision(accelerator) == expected
        assert f"precision: {expected}, chosen because the GPU " in capsys.readouterr().err


def test_a_gpu_without_bf16_gets_fp16_mixed_from_the_cli(monkeypatch, tmp_path):
    """On a V100-like GPU, --trainer.precision left unset becomes 16-mixed in the config the CLI hands to the Trainer
    (no Trainer is built: there is no GPU here); an explicit precision wins; a CPU run follows the CPU rule."""
    from qa_lightning.cli import QACLI
    from qa_lightning.data.datamodule import SquadDataModule
    from qa_lightning.module import QAModule

    _cpu(monkeypatch, "avx512_bf16")
    _gpu(monkeypatch, 7)
    monkeypatch.setattr(QACLI, "instantiate_classes", lambda self: None)
    monkeypatch.setattr(QACLI, "after_instantiate_classes", lambda self: None)
    common = ["--model.model_name_or_path", str(TINY_BERT), "--trainer.logger", "false",
              "--trainer.default_root_dir", str(tmp_path)]
    cli = QACLI(QAModule, SquadDataModule, run=False, args=common)
    assert cli.config.trainer.precision == "16-mixed"
    cli = QACLI(QAModule, SquadDataModule, run=False, args=[*common, "--trainer.precision", "32-true"])
    assert cli.config.trainer.precision == "32-true"  # an explicit precision wins
    cli = QACLI(QAModule, SquadDataModule, run=False, args=[*common, "--trainer.accelerator", "cpu"])
    assert cli.config.trainer.precision == "bf16-mixed"  # a CPU run on a GPU machine follows the CPU rule


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU rule of inference needs a GPU")
def test_inference_on_a_gpu_follows_the_training_rule():
    from qa_lightning import infer
    from qa_lightning.hf import build_model, load_tokenizer

    qa = infer.QAModel(build_model(str(TINY_BERT), pretrained=False), load_tokenizer(str(TINY_BERT)))
    assert qa.device.type == "cuda" and qa.bf16 is (precision.choose_precision("auto")[0] == "bf16-mixed")
