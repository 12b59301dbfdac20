"""A checkpoint never runs code: every entry point that opens a ``.ckpt`` reads it through the one safe reader
(``resume.read_checkpoint``: CPU, mmap, ``weights_only=True``, checked). Tested with a real payload: a copy of a
debug checkpoint with one extra entry whose unpickling would create a file."""

from __future__ import annotations

import ast
import re

import pytest
import torch

from qa_lightning.errors import QAInputError
from qa_lightning.infer import QAModel
from qa_lightning.resume import find_last_checkpoint
from conftest import ROOT, debug_args, one_error_line, run_cli


class Payload:
    """Pickled by ``__reduce__`` as a call of ``open(marker, "w")``: unpickling it creates ``marker`` (what a
    hostile checkpoint could do with any other callable)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def poisoned(debug_run, tmp_path):
    ckpt = torch.load(debug_run[1] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    marker = tmp_path / "payload-ran"
    ckpt["extra"] = Payload(marker)
    path = tmp_path / "poisoned.ckpt"
    torch.save(ckpt, path)
    assert not marker.exists()
    return path, marker


@pytest.mark.slow
@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict", "ask", "export"])
def test_a_poisoned_checkpoint_runs_no_code_at_any_command(poisoned, tmp_path, command):
    path, marker = poisoned
    if command == "ask":
        args = ["ask", "--model", path, "--question", "Who won?", "--context", "The Broncos won."]
    elif command == "export":
        args = ["export", path, tmp_path / "export"]
    else:
        args = [command, *debug_args(tmp_path, "--ckpt_path", path)]
    line = one_error_line(run_cli(*args, check=False, timeout=300))
    assert str(path) in line and "cannot be read safely (torch.load weights_only" in line, line
    assert not marker.exists(), f"the checkpoint's payload ran in `{command}`"
    assert not (tmp_path / "export").exists()


@pytest.mark.slow
def test_a_poisoned_checkpoint_runs_no_code_in_the_python_api_or_as_last(poisoned):
    path, marker = poisoned
    with pytest.raises(QAInputError, match=re.escape(f"{path}: cannot be read safely")):
        QAModel.from_pretrained(str(path))
    found, skipped = find_last_checkpoint([path.parent])  # --ckpt_path last: the newest file is skipped
    assert found is None and skipped == [(str(path.resolve()), skipped[0][1])]
    assert skipped[0][1].startswith("cannot be read safely (torch.load weights_only")
    assert not marker.exists()


def _torch_load_calls(text: str) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"]


def test_one_checkpoint_reader_in_the_package():
    """``torch.load`` is called once, in resume.py, with ``weights_only=True``; ``weights_only=False`` nowhere."""
    sources = {p.relative_to(ROOT).as_posix(): p.read_text() for p in (ROOT / "qa_lightning").rglob("*.py")}
    assert [name for name, text in sources.items() if "weights_only=False" in text] == []
    calls = {name: _torch_load_calls(text) for name, text in sources.items()}
    calls = {name: found for name, found in calls.items() if found}
    assert list(calls) == ["qa_lightning/resume.py"] and len(calls["qa_lightning/resume.py"]) == 1, calls
    keywords = {kw.arg: kw.value.value for kw in calls["qa_lightning/resume.py"][0].keywords}
    assert keywords["weights_only"] is True and keywords["mmap"] is True and keywords["map_location"] == "cpu"
