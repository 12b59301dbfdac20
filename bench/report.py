"""The markdown report: one table of rows (speed or learning columns), the set-up line and the details."""

from __future__ import annotations

import os
import platform
import sys
import time

SPEED_COLUMNS = (("stage", "stage"), ("pipeline", "pipeline"), ("rate", "rate"), ("tokens", "real tokens/s"),
                 ("median", "median step s"), ("wall", "wall s"), ("e2e", "end-to-end s"), ("mem", "peak memory"),
                 ("ratio", "speed vs peer"))
LEARN_COLUMNS = (("stage", "stage"), ("pipeline", "pipeline"), ("em", "EM"), ("f1", "F1"), ("train", "train s"),
                 ("eval", "eval s"), ("wall", "wall s"), ("ratio", "speed vs peer"))


def render(a, prec: str, rows: list, details: list, total_s: float, load: tuple) -> str:
    import datasets
    import lightning
    import torch
    import transformers

    dev = torch.cuda.get_device_name() if a.device == "cuda" else f"CPU ({platform.processor() or platform.machine()}" \
        f", {os.cpu_count()} cores, torch threads {torch.get_num_threads()})"
    columns = LEARN_COLUMNS if a.learn else SPEED_COLUMNS
    lines = [f"# qa_lightning benchmark ({a.device}, model {a.model}{', learning' if a.learn else ''})", "",
             f"`{' '.join(['python -m bench', *sys.argv[1:]])}` -- {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{dev}; Python {platform.python_version()}, torch {torch.__version__}, transformers "
             f"{transformers.__version__}, lightning {lightning.__version__}, datasets {datasets.__version__}; "
             f"precision {prec}; whole run {total_s:.0f} s; load average {load[0]:.2f} at start, "
             f"{os.getloadavg()[0]:.2f} at end.", "",
             "| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k, _ in columns) + " |" for r in rows]
    mem = "torch.cuda.max_memory_allocated" if a.device == "cuda" else "peak RSS growth over the run (10 ms samples)"
    if not a.learn:
        lines += ["", "How: train rate = features of the timed steps / their summed step time (step = interval "
                  f"between optimizer-step ends, first {a.warmup_steps} steps dropped; ours is timed over a whole "
                  "length-grouped mega-batch of 50 steps, the peer's batches are all max_length); real tokens/s = attention-mask tokens of the measured batches / "
                  "their summed step time; wall s = train start to last step end; end-to-end s = from the raw JSON "
                  f"(features, model, trainer, checkpoint) to done; peak memory = {mem}; speed vs peer = ours' rate "
                  "/ the peer's (post: the reference as written / each row); prep and post: best of "
                  f"{a.repeats}."]
    lines += ["", *details, ""]
    return "\n".join(lines)


