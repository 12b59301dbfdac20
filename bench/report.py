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


def render(a, prec, rows: list, details: list, total_s: float, load: tuple) -> str:
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
             f"precision {prec.describe()}; whole run {total_s:.0f} s; load average {load[0]:.2f} at start, "
             f"{os.getloadavg()[0]:.2f} at end.", "",
             "| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k, _ in columns) + " |" for r in rows]
    mem = "torch.cuda.max_memory_allocated" if a.device == "cuda" else "peak RSS growth over the run (10 ms samples)"
    if not a.learn:
        clock = "process CPU time (--clock cpu)" if a.clock == "cpu" else "wall time"
        lines += ["", "How: a step = the interval from one training batch start to the next (loading, hooks, logging, "
                  f"clipping, optimizer: everything), {clock}; the first {a.warmup_steps} steps of each run are not "
                  f"timed. Train: {a.rounds} rounds of peer then ours (at each precision); rate = features of the "
                  "timed steps / their summed time, shown for the median round; speed vs peer = the median over "
                  "rounds of ours' rate / the rate of the peer run of the same round (default vs default: ours at "
                  "its automatic precision, the peer at its default; the other rows: both at one precision); median "
                  "step s = the median over rounds of each run's "
                  "median step; real tokens/s = attention-mask tokens of the timed batches / their summed time; wall "
                  "s = first to last batch start; end-to-end s = round 1 from the raw JSON (features, model, trainer, "
                  f"training, checkpoint, export) to done; peak memory = {mem} (largest round). Overhead: ms per step "
                  "(median), ratio = time per step / the plain loop's. Prep and post: best of "
                  f"{a.repeats}; speed vs peer = the reference as written / each row."]
    lines += ["", *details, ""]
    return "\n".join(lines)


