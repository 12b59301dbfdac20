"""files.py: one atomic write for files and folders (the old one stays whole when writing fails), one discard."""

from __future__ import annotations

import pytest

from qa_lightning.files import atomic_path, discard


def test_a_failed_write_leaves_the_old_file_or_folder_and_no_temporary(tmp_path):
    target, folder = tmp_path / "predictions.json", tmp_path / "export"
    with atomic_path(target) as tmp:
        open(tmp, "w").write("old")
    with atomic_path(folder, folder=True) as tmp:
        open(f"{tmp}/config.json", "w").write("old")
    for path, is_folder in ((target, False), (folder, True)):
        with pytest.raises(KeyboardInterrupt):
            with atomic_path(path, folder=is_folder) as tmp:
                open(f"{tmp}/config.json" if is_folder else tmp, "w").write("half")
                raise KeyboardInterrupt("killed mid-write")
    assert target.read_text() == "old" and (folder / "config.json").read_text() == "old"
    with atomic_path(folder, folder=True) as tmp:  # a full folder is replaced
        open(f"{tmp}/model.safetensors", "w").write("new")
    assert [p.name for p in folder.iterdir()] == ["model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "predictions.json"]  # no leftovers
    discard(folder)
    discard(folder)  # gone already: nothing to do
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.json"]
