"""The automatic precision (what ``--trainer.precision`` means when it is left unset), and gradient clipping that
also works for a fused AdamW under mixed precision. Torch only, no Lightning.

    auto_precision("auto")  # -> "bf16-mixed" | "16-mixed" | None (Lightning's fp32), and one line on stderr saying why

GPUs: bf16 mixed where supported, else fp16 mixed. CPUs: bf16 mixed only with native bf16 matrix instructions
(AVX512_BF16 or AMX-BF16; without them oneDNN emulates bf16, slower than fp32: pytorch issues 86550, 118499).
"""

from __future__ import annotations

import inspect
import sys
from typing import Optional

import torch

from .checkpoints import launch_rank_zero  # the launchers' rank variables, no Lightning import

# Instruction sets with native bf16 matrix arithmetic, as torch's capability dict and /proc/cpuinfo name them.
BF16_ISAS = ("amx_bf16", "avx512_bf16")
CPUINFO = "/proc/cpuinfo"


def _torch_isa() -> Optional[str]:
    """The bf16 instruction set torch's CPUID reading sees ('' when none), or None when this torch cannot tell."""
    cpu = torch.cpu
    try:
        if callable(getattr(cpu, "get_capabilities", None)):  # recent torch: one dict of CPUID features
            caps = cpu.get_capabilities()
            return next((isa for isa in BF16_ISAS if caps.get(isa)), "")
        # torch 2.3 .. : private checks (every CPU with AMX tiles so far has AMX-BF16)
        if cpu._is_amx_tile_supported():
            return "amx_tile"
        return "avx512_bf16" if cpu._is_avx512_bf16_supported() else ""
    except (AttributeError, RuntimeError, TypeError):  # private API missing or changed: ask /proc/cpuinfo
        return None


def cpuinfo_field(name: str) -> str:
    """The value of the first ``name`` line of ``CPUINFO`` (e.g. "model name", "flags"); '' when none or unreadable."""
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith(name)), "")
    except OSError:
        return ""


def cpu_bf16_isa() -> str:
    """The CPU's native bf16 matrix instruction set ('amx_bf16', 'amx_tile' or 'avx512_bf16'), '' when none."""
    found = _torch_isa()
    if found is None:  # this torch cannot tell: the flags the kernel reports
        flags = cpuinfo_field("flags").split()
        found = next((isa for isa in BF16_ISAS if isa in flags), "")
    return found


def gpu_bf16() -> bool:
    """Whether the current GPU computes in bf16 natively (compute capability 8.0+, or ROCm). Not torch's default
    answer: recent torch's ``is_bf16_supported()`` also says yes for GPUs that merely store bf16 tensors (V100, T4),
    where bf16 arithmetic is emulated and slower than fp16."""
    if "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.cuda.is_bf16_supported()  # older torch: it checks compute capability 8.0+ itself


def choose_precision(accelerator: object) -> tuple[Optional[str], str]:
    """(precision for Lightning or None for its default, the reason in words) for ``--trainer.accelerator``."""
    wants_gpu = accelerator in (None, "auto", "gpu", "cuda") and torch.cuda.is_available()
    if wants_gpu:
        if gpu_bf16():
            return "bf16-mixed", "the GPU supports bf16"
        return "16-mixed", "the GPU has no bf16"
    if accelerator not in (None, "auto", "cpu"):
        return None, f"accelerator {accelerator!r}: Lightning's default"
    isa = cpu_bf16_isa()
    if isa:
        return "bf16-mixed", f"the CPU has {isa}, native bf16 matrix instructions"
    return None, "the CPU has no native bf16 matrix instructions, avx512_bf16 or amx_bf16"


def auto_precision(accelerator: object) -> Optional[str]:
    """The precision for an unset ``--trainer.precision`` (see the module docstring); rank 0 says which and why."""
    precision, why = choose_precision(accelerator)
    if launch_rank_zero():
        print(f"precision: {precision or '32-true'}, chosen because {why} (--trainer.precision sets another)",
              file=sys.stderr)
    return precision


def clip_gradients(module, optimizer: torch.optim.Optimizer, clip_val: Optional[float], algorithm) -> None:
    """QAModule's gradient clipping: Lightning's own (``module.clip_gradients``), except for a fused AdamW, which
    unscales fp16 gradients inside ``step()`` (so Lightning refuses to clip it under mixed precision): fp16's
    ``GradScaler`` unscales here instead and then tells ``step()`` that the gradients are unscaled. ``algorithm``:
    "value" or "norm" (also as Lightning's ``GradClipAlgorithmType``)."""
    if not (clip_val and optimizer.defaults.get("fused")):
        return module.clip_gradients(optimizer, clip_val, algorithm)
    scaler = getattr(module.trainer.precision_plugin, "scaler", None)  # None for bf16 and fp32
    if scaler is not None:
        scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if str(algorithm) in ("value", "GradClipAlgorithmType.VALUE"):
        torch.nn.utils.clip_grad_value_(params, clip_val)
    else:  # no host sync: the scale factor stays on the device
        torch.nn.utils.clip_grad_norm_(params, clip_val)
