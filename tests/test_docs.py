"""The README and docs/ as a reader meets them: a short README linking every docs page, links and named files that
exist, options that the command line has, and speed figures that are the ones in the bench results files."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCS = [README, *PAGES, ROOT / "bench" / "README.md"]
# `--section.option` as the README and docs name fit's options
OPTION = re.compile(r"--(model|data|trainer|checkpoint|export|crash_safety|lr_monitor)\.([a-z_0-9]+)")


def _text(path) -> str:
    return path.read_text(encoding="utf-8")


def test_the_readme_is_short_and_links_every_docs_page():
    readme = _text(README)
    assert len(readme.splitlines()) <= 160
    assert PAGES, "docs/ has no page"
    for page in PAGES:
        assert f"](docs/{page.name})" in readme, f"README does not link docs/{page.name}"


def test_relative_links_and_named_files_exist():
    for doc in DOCS:
        text = _text(doc)
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)} links {target}: no such file"
        # repository paths in backticks: `tests/x.py`, `bench/results-cuda-2026-11-30.md`, `configs/demo.yaml`
        for path in re.findall(r"`((?:qa_lightning|tests|bench|configs)/[\w./-]+)`", text):
            assert (ROOT / path).exists(), f"{doc.relative_to(ROOT)} names {path}: no such file or folder"


@pytest.fixture(scope="module")
def fit_config() -> dict:
    proc = subprocess.run([sys.executable, "-m", "qa_lightning", "fit", "--print_config"], cwd=ROOT.parent,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return yaml.safe_load(proc.stdout)


def test_every_option_the_docs_name_exists(fit_config):
    named = {m for doc in DOCS for m in OPTION.findall(_text(doc))}
    assert ("trainer", "num_nodes") in named and ("crash_safety", "every_n_train_steps") in named
    missing = [f"--{section}.{key}" for section, key in sorted(named) if key not in (fit_config.get(section) or {})]
    assert missing == [], f"options named in README/docs that `fit --print_config` does not have: {missing}"


def test_every_ask_option_the_docs_name_exists():
    proc = subprocess.run([sys.executable, "-m", "qa_lightning", "ask", "--help"], cwd=ROOT.parent,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = _text(ROOT / "docs" / "inference.md")
    text = page[page.index("## `ask`"):page.index("## `QAModel`")]
    text += "\n".join(line for line in _text(README).splitlines() if "qa_lightning ask" in line)
    named = set(re.findall(r"(--[a-z]+(?:-[a-z]+)*)(?![\w.])", text))
    assert {"--model", "--question", "--context-file", "--top-k", "--null-threshold"} <= named
    assert [n for n in sorted(named) if n not in proc.stdout] == []


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d+|\d+", text)]


def test_readme_speed_figures_are_those_of_their_results_files():
    """Each row of the README's speed table: its ratio is the bold ratio of the results file it names, and its two
    rates are the file's rates as rounded in the README."""
    readme = _text(README)
    table = readme[readme.index("## Speed"):readme.index("## Read more")]
    rows = [r for r in table.splitlines() if r.startswith("|") and "results-" in r]
    assert len(rows) == 2 and any("H200" in r for r in rows)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        results = _text(ROOT / re.search(r"`(bench/results-[\w.-]+\.md)`", row).group(1))
        ratio = re.search(r"\*\*(\d+\.\d+x)\*\*", cells[3]).group(1)
        train_rows = [line for line in results.splitlines() if line.startswith("| train:")]
        assert any(f"**{ratio}**" in line for line in train_rows), (ratio, train_rows)
        peer, ours = (float(x) for x in re.findall(r"[\d.]+", cells[2]))
        decimals = [len(x.split(".")[1]) if "." in x else 0 for x in re.findall(r"[\d.]+", cells[2])]
        rates = _numbers(results[:results.index("How:")] if "How:" in results else results)
        for value, places in zip((peer, ours), decimals):
            assert any(round(r, places) == value for r in rates), f"{value} not in {row}'s results file"


def test_readme_accuracy_figures_are_those_of_the_learn_results():
    """The README's `make bench-learn` sentence: each F1 it quotes is the F1 column of a row of the results file."""
    readme = _text(README)
    sentence = readme[readme.index("`make bench-learn`"):]
    sentence = sentence[:sentence.index("peer.") + 5]
    quoted = [float(x) for x in re.findall(r"F1 (\d+\.\d+)|, (\d+\.\d+) (?:with|for)", sentence) for x in x if x]
    rows = [line.split("|") for line in _text(ROOT / "bench/results-cpu-learn.md").splitlines()
            if line.startswith("| learn:")]
    f1s = {float(cells[4]) for cells in rows}
    assert len(quoted) == 3 and set(quoted) <= f1s, (quoted, f1s)
