"""The benchmark package (``python -m bench``): its imports set no environment, its precision plan, and a smoke run
(no timing is asserted: speed lives in ``make bench``). That the library never imports bench/: test_layout.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, TINY_DEV, TINY_TRAIN
from qa_lightning import precision


def test_bench_imports_set_no_environment_and_find_the_oracle():
    # Third-party imports may set variables of their own (lightning does in some versions): import them first.
    code = ("import json, os, lightning, torch, transformers, datasets; before = dict(os.environ)\n"
            "import bench.__main__, bench.harness, bench.peer, bench.train, bench.stages, bench.learn, bench.report\n"
            "import bench.overhead, bench.ours, bench.evaluation, tests.reference\n"
            "print(json.dumps({'changed': sorted(k for k in set(os.environ) | set(before)\n"
            "                                    if os.environ.get(k) != before.get(k)),\n"
            "                  'oracle': tests.reference.__file__}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "TOKENIZERS_"))}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["changed"] == []
    assert os.path.samefile(info["oracle"], ROOT / "tests" / "reference.py")


@pytest.mark.parametrize("isa", ["", "avx512_bf16"])
def test_bench_runs_each_pipeline_at_its_default_and_the_same_precision_pairs(monkeypatch, isa):
    from bench.__main__ import parse_args
    from bench.harness import resolve_precision

    monkeypatch.setattr(precision, "cpu_bf16_isa", lambda: isa)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    plan = resolve_precision(parse_args([]))
    assert (plan.peer, plan.ours) == ("fp32", "bf16" if isa else "fp32")  # the peer: the recipe's CPU default
    assert plan.all == (["fp32", "bf16"] if isa else ["fp32"])
    assert plan.flag(plan.ours) is None and (not isa or plan.flag("fp32") == "fp32")  # ours' default: no flag
    fixed = resolve_precision(parse_args(["--precision", "fp32"]))
    assert fixed.all == ["fp32"] and fixed.flag("fp32") == "fp32"


@pytest.mark.slow
def test_bench_smoke_train_overhead_and_eval_stages(tmp_path):
    """Every timed stage runs end to end on the tiny model: both pipelines in alternating rounds (ours through the
    CLI's fit), the overhead loops, validate + the projection."""
    pytest.importorskip("accelerate")  # transformers.Trainer needs it
    out = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, "-m", "bench", "--model", "tiny", "--stages", "train,overhead,eval",
                           "--rounds", "2", "--steps", "2", "--ours-steps", "3", "--overhead-steps", "3",
                           "--max-length", "128", "--stride", "32", "--train-file", str(TINY_TRAIN),
                           "--threads", "1", "--clock", "cpu",
                           "--dev-file", str(TINY_DEV), "--out", str(out), "--work-dir", str(tmp_path / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    # Row (1): each pipeline at its own default precision; then the same-precision rows (fp32 and, on a CPU with
    # bf16 instructions where ours' automatic precision is bf16, bf16 too).
    ours_prec = "bf16" if precision.cpu_bf16_isa() else "fp32"
    rows = [line for line in table.splitlines() if line.startswith("| train")]
    assert rows[0].startswith("| train: batch 16, 128/32, **default vs default** | ours at its automatic precision "
                              f"({ours_prec}) vs the peer at its default (fp32), 2 rounds |")
    assert f"precision ours automatic ({ours_prec}), the peer's default (fp32)" in table
    for prec in dict.fromkeys(("fp32", ours_prec)):
        assert f"| train: batch 16, {prec}, 128/32 | peer: HF Trainer, padded to max_length, 2 steps x 2 rounds" in table
    assert "ours: `python -m qa_lightning fit` (defaults), 3 steps x 2 rounds" in table  # automatic precision
    if ours_prec == "bf16":
        assert "(defaults, --trainer.precision 32-true), 3 steps x 2 rounds" in table
    assert "round 1: " in table and "round 2: " in table and "median" in table
    assert "real tokens per feature: dataset mean" in table and "process CPU time (--clock cpu)" in table
    for label in ("plain PyTorch loop", "transformers.Trainer, same batches", "ours: `python -m qa_lightning fit`, 3"):
        assert label in table
    assert f"| eval: 106 features, batch 64, {ours_prec} | ours: `python -m qa_lightning validate`" in table
    assert "projection: 3-epoch recipe" in table
    # ours ran through the CLI: its run folder has the CSV log with the step loss of the logged steps
    assert list((tmp_path / "work" / f"ours-{ours_prec}-1").rglob("metrics.csv"))
