"""The automatic precision: what ``--trainer.precision`` means when it is left unset (torch only, no Lightning).

    auto_precision("auto")  # -> "bf16-mixed" | "16-mixed" | None (Lightning's fp32), and one line on stderr saying why

- A GPU (accelerator auto/gpu/cuda and CUDA available): bf16 mixed where the GPU supports bf16, else fp16 mixed.
- The CPU: bf16 mixed (``torch.autocast("cpu", torch.bfloat16)``, fp32 master weights) when the CPU has native bf16
  matrix instructions -- AVX512_BF16 (AMD Zen 4+, Intel Cooper Lake) or AMX-BF16 (Intel Sapphire Rapids+) --, fp32
  otherwise: without them oneDNN emulates bf16 and autocast is slower than fp32 (pytorch issues 86550, 118499).
  On an AVX512_BF16 CPU a MiniLM training step is ~1.3x and a bert-base step ~1.8x faster than in fp32.
- Any other accelerator (mps, ...): None, Lightning's default.

The CPU check asks torch (its own CPUID reading) and falls back to the flags
in ``/proc/cpuinfo`` when this torch has no such check (torch < 2.3).
"""

from __future__ import annotations

import inspect
import sys
from typing import Optional

import torch

from .checkpoints import launch_rank_zero  # the launchers' rank variables, no Lightning import

__all__ = ["auto_precision", "choose_precision", "cpu_bf16_isa"]

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


def _cpuinfo_isa() -> str:
    """The bf16 instruction set named in the first ``flags`` line of ``CPUINFO`` ('' when none or unreadable)."""
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return ""
    return next((isa for isa in BF16_ISAS if isa in flags), "")


def cpu_bf16_isa() -> str:
    """The CPU's native bf16 matrix instruction set ('amx_bf16', 'amx_tile' or 'avx512_bf16'), '' when none."""
    found = _torch_isa()
    return _cpuinfo_isa() if found is None else found


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
