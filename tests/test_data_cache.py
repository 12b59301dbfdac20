"""data/cache.py: a damaged feature cache is detected against its manifest and rebuilt with a warning."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

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
    assert dm.splits.status == {"validation": "built"}
    return cache, dm.splits.path("validation"), dm.features["validation"]["input_ids"]


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
    assert dm.splits.status == {"validation": "built"}
    assert dm.features["validation"]["input_ids"] == input_ids and verify_split(path) is None
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



# One process that builds the validation cache of make_dm(cache): it says it is ready (everything imported), then
# starts when the file `go` appears.
BUILDER = """
import hashlib, json, os, sys, time, warnings
cache, go, tests = sys.argv[1:4]
sys.path.insert(0, tests)
from test_data_cache import make_dm
dm = make_dm(cache)
open(go + f".ready-{os.getpid()}", "w").close()
while not os.path.exists(go):
    time.sleep(0.002)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    dm.setup("validate")
ids = json.dumps(list(dm.features["validation"]["input_ids"])).encode()
print(json.dumps({"status": dm.splits.status["validation"], "ids": hashlib.sha256(ids).hexdigest(),
                  "warnings": [str(w.message) for w in caught if "feature cache" in str(w.message)]}))
"""


@pytest.mark.slow
def test_two_runs_building_the_same_cache_at_once_both_finish(built, tmp_path):
    """Two processes start building the same split's cache at the same moment: both finish with the right features,
    and the cache left behind verifies against its manifest and loads (a third run hits it)."""
    _, path, input_ids = built
    cache, go = tmp_path / "cache", tmp_path / "go"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    tests = os.path.dirname(os.path.abspath(__file__))
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(cache), str(go), tests], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    deadline = time.time() + 300
    while len(list(tmp_path.glob("go.ready-*"))) < 2:
        assert time.time() < deadline and all(p.poll() is None for p in procs), "a builder did not start"
        time.sleep(0.01)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["status"] for r in results] == ["built", "built"], results  # neither found the other's cache
    expected = hashlib.sha256(json.dumps(list(input_ids)).encode()).hexdigest()
    assert [r["ids"] for r in results] == [expected, expected]
    assert verify_split(str(cache / os.path.basename(path))) is None
    dm = make_dm(str(cache))
    dm.setup("validate")
    assert dm.splits.status == {"validation": "hit"} and dm.features["validation"]["input_ids"] == input_ids
    assert [p for p in os.listdir(cache) if p.startswith(".")] == []  # no temporary or discarded folder left
