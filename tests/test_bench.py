"""Smoke test of the benchmark harness (no timing is asserted: speed lives in `make bench`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, TINY_TRAIN


@pytest.mark.slow
def test_bench_train_stage_runs_both_pipelines(tmp_path):
    pytest.importorskip("accelerate")  # transformers.Trainer needs it
    out = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, "-m", "qa_lightning.bench", "--model", "tiny", "--stages", "train",
                           "--steps", "3", "--ours-steps", "4", "--train-file", str(TINY_TRAIN), "--out", str(out),
                           "--work-dir", str(tmp_path / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    assert "peer: HF Trainer, padded to max_length" in table and "ours: Lightning fit path (defaults)" in table
    assert "features/s" in table
