"""data/cache.py: a damaged feature cache is detected against its manifest and rebuilt with a warning."""

from __future__ import annotations

import glob
import json
import os
import shutil

import pytest

from qa_lightning import SquadDataModule
from qa_lightning.data.cache import MANIFEST, load_split_cache, verify_split
from conftest import TINY_BERT, TINY_DEV


def make_dm(cache_dir):
    return SquadDataModule(model_name_or_path=str(TINY_BERT), validation_file=str(TINY_DEV), max_length=128,
                           stride=32, cache_dir=cache_dir, num_workers=0)


def arrow_file(path):
    return sorted(glob.glob(os.path.join(path, "features", "*.arrow")))[0]


def damage(kind, path):
    if kind == "truncated_arrow":
        f = arrow_file(path)
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
    elif kind == "empty_arrow":
        open(arrow_file(path), "wb").close()
    elif kind == "broken_state_json":
        with open(os.path.join(path, "features", "state.json"), "w") as fh:
            fh.write('{"_data_files": [')
    elif kind == "missing_report":
        os.remove(os.path.join(path, "report.txt"))
    elif kind == "missing_features":
        shutil.rmtree(os.path.join(path, "features"))
    elif kind == "same_size_garbage":  # bytes changed in place, size kept: the checksum catches it
        f = arrow_file(path)
        size = os.path.getsize(f)
        with open(f, "r+b") as fh:
            fh.write(b"\0" * min(size, 4096))
    elif kind == "no_manifest":  # written by an older version, or a copy without it
        os.remove(os.path.join(path, MANIFEST))


KINDS = {"truncated_arrow": "bytes", "empty_arrow": "has 0 bytes", "broken_state_json": "state.json",
         "missing_report": "report.txt is missing", "missing_features": "is missing",
         "same_size_garbage": "does not match its checksum", "no_manifest": "no manifest.json"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    dm = make_dm(cache)
    dm.setup("validate")
    assert dm.cache_status == {"validation": "built"}
    return cache, dm._cache_path("validation"), dm.val_dataset["input_ids"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_damaged_cache_is_rebuilt_with_a_warning(built, tmp_path, kind):
    src, path, input_ids = built
    cache = str(tmp_path / "cache")
    shutil.copytree(src, cache)
    path = os.path.join(cache, os.path.basename(path))
    assert verify_split(path) is None
    damage(kind, path)
    assert KINDS[kind] in verify_split(path)
    dm = make_dm(cache)
    with pytest.warns(UserWarning, match=r"feature cache .* is damaged \(.*\); rebuilding it"):
        dm.setup("validate")
    assert dm.cache_status == {"validation": "built"}
    assert dm.val_dataset["input_ids"] == input_ids and verify_split(path) is None
    assert [p for p in os.listdir(cache) if p.startswith(".")] == []  # nothing left aside


def test_unreadable_after_verification_is_rebuilt(built, tmp_path):
    src, path, input_ids = built
    cache = str(tmp_path / "cache")
    shutil.copytree(src, cache)
    path = os.path.join(cache, os.path.basename(path))
    os.remove(os.path.join(path, "report.txt"))  # damaged between the check and the read
    rebuilt = []
    with pytest.warns(UserWarning, match=r"cannot be read \(FileNotFoundError"):
        examples, features, report = load_split_cache(path, rebuild=lambda p: rebuilt.append(shutil.copytree(
            os.path.join(src, os.path.basename(p)), p)))
    assert rebuilt and features["input_ids"] == input_ids and "40 examples" in report


def test_manifest_records_every_file(built):
    _, path, _ = built
    manifest = json.load(open(os.path.join(path, MANIFEST)))
    assert {"report.txt", os.path.join("features", "state.json"), os.path.join("examples", "dataset_info.json")} \
        <= set(manifest)
    assert all(size >= 0 and len(digest) == 64 for size, digest in manifest.values())
