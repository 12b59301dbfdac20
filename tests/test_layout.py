"""The package's shape: library only (no imports of tests/ or bench/), pure modules without Lightning, no import
cycles, and an installed (non-editable) wheel that imports and runs from any directory."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PKG = ROOT / "qa_lightning"
# Modules that must stay importable without Lightning (numpy/torch/transformers/datasets only).
PURE = ["qa_lightning.data.formats", "qa_lightning.data.sources", "qa_lightning.data.features",
        "qa_lightning.data.batching", "qa_lightning.data.samplers", "qa_lightning.data.cache",
        "qa_lightning.evaluation.evalset", "qa_lightning.evaluation.gather", "qa_lightning.evaluation.decoding",
        "qa_lightning.evaluation.metrics", "qa_lightning.evaluation.postprocess", "qa_lightning.hf",
        "qa_lightning.resume", "qa_lightning.errors", "qa_lightning.precision"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules a file imports at module level (relative imports resolved)."""
    tree, name = ast.parse(path.read_text()), _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def test_library_imports_neither_tests_nor_bench():
    for path in PKG.rglob("*.py"):
        text = path.read_text()
        bad = [m for m in _imports(path) if m.split(".")[0] in ("tests", "bench", "reference", "conftest")]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
        assert "../shared" not in text and "tests/fixtures" not in text, path


def test_no_import_cycles_between_modules():
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    # A package __init__ importing its own children is not a cycle that matters (ours are lazy anyway).
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(stack + [m, n])}")
            if not state.get(n):
                visit(n, stack + [m])
        state[m] = 2

    for m in graph:
        if not state.get(m):
            visit(m, [])


def test_pure_modules_do_not_import_lightning():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in PURE) +
            "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_files_and_functions_stay_small():
    """~300 lines a module, ~60 a function (the guide); a longer one must say why in its docstring."""
    for path in PKG.rglob("*.py"):
        lines = path.read_text().count("\n")
        assert lines <= 320, f"{path.relative_to(ROOT)}: {lines} lines"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                assert length <= 60 or "long because" in doc, f"{path.relative_to(ROOT)}:{node.name} {length} lines"


@pytest.mark.slow
def test_installed_wheel_imports_and_runs_from_another_directory(tmp_path):
    """A regular (non-editable) wheel: the package, its wings and the demo data are inside; the CLI starts."""
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheel_dir), str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    wheel = next(wheel_dir.glob("qa_lightning-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    code = ("import qa_lightning, qa_lightning.data.features, qa_lightning.evaluation.postprocess, qa_lightning.cli\n"
            f"assert qa_lightning.__file__.startswith({str(site)!r}), qa_lightning.__file__\n"
            "from importlib import resources\n"
            "assert resources.files('qa_lightning').joinpath('assets/squad_demo/heldout.json').is_file()\n"
            "import os; assert not os.path.exists(os.path.join(os.path.dirname(qa_lightning.__file__), '..', 'tests'))\n")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True)
    proc = subprocess.run([sys.executable, "-m", "qa_lightning", "fit", "--print_config"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "model_name_or_path: bert-base-cased" in proc.stdout and "max_length: 384" in proc.stdout
    # The console script: one --help with all six subcommands, exit status 0
    proc = subprocess.run([str(site / "bin" / "qa-lightning"), "--help"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: qa-lightning "), proc.stderr[-2000:]
    assert "{fit,validate,test,predict,ask,export}" in proc.stdout


def test_layout_table_lists_every_module_and_only_modules():
    """docs/layout.md's table (linked from the README) names every module of the package, and only existing ones."""
    page = (ROOT / "docs" / "layout.md").read_text()
    table = page[:page.index("Where a change goes")]
    for path in PKG.rglob("*.py"):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        rel = path.relative_to(PKG).as_posix()
        assert f"`{rel}`" in table or f"`qa_lightning/{rel}`" in table, f"docs/layout.md misses {rel}"
    for name in re.findall(r"^\| `(?:qa_lightning/)?((?!tests/)[\w/]+\.py)`", table, flags=re.M):
        assert (PKG / name).is_file(), f"docs/layout.md lists {name}, which is not a file of the package"
