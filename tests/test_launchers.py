"""Cluster launchers (the README's multi-node line): under SLURM's or torchrun's variables the CLI hands Lightning
the cluster's ranks, and only global rank 0 creates the run folder. No multi-node run happens here: each rank's
Trainer is built (not run) in a process of its own with that rank's variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import TINY_BERT, TINY_DEV, TINY_TRAIN

# One rank of `python -m qa_lightning fit ...`, stopped when its Trainer is built, before training; prints what
# Lightning was given and the run folders at that moment (an empty run folder is removed when its process ends).
RANK = """
import json, os, sys
from qa_lightning import cli as qa_cli
qa_cli.QACLI._run_subcommand = lambda self, subcommand: None
cli = qa_cli.main(["fit", *sys.argv[1:]])
t, runs = cli.trainer, os.path.join(cli.config.fit.trainer.default_root_dir, "lightning_logs")
print(json.dumps({"env": type(t._accelerator_connector.cluster_environment).__name__, "global_rank": t.global_rank,
                  "local_rank": t.local_rank, "node_rank": t.node_rank, "world_size": t.world_size,
                  "starts_processes": not t._accelerator_connector.cluster_environment.creates_processes_externally,
                  "run_folders": sorted(os.listdir(runs)) if os.path.isdir(runs) else []}))
"""

SLURM = {"SLURM_JOB_NAME": "qa", "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "node[1-2]", "SLURM_NNODES": "2",
         "SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2"}
TORCHRUN = {"TORCHELASTIC_RUN_ID": "qa", "MASTER_ADDR": "node1", "MASTER_PORT": "29500", "WORLD_SIZE": "4",
            "LOCAL_WORLD_SIZE": "2", "GROUP_WORLD_SIZE": "2"}


def _rank(tmp_path, launcher: str, rank: int) -> dict:
    node, local = divmod(rank, 2)
    if launcher == "slurm":
        extra = {**SLURM, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(local), "SLURM_NODEID": str(node)}
    else:
        extra = {**TORCHRUN, "RANK": str(rank), "LOCAL_RANK": str(local), "GROUP_RANK": str(node)}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))
           and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(extra, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    args = ["--model.model_name_or_path", str(TINY_BERT), "--model.pretrained", "false",
            "--data.train_file", str(TINY_TRAIN), "--data.validation_file", str(TINY_DEV),
            "--data.cache_dir", str(tmp_path / "cache"), "--trainer.accelerator", "cpu",
            "--trainer.num_nodes", "2", "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--trainer.default_root_dir", str(tmp_path / "root")]
    proc = subprocess.run([sys.executable, "-c", RANK, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("launcher, environment", [("slurm", "SLURMEnvironment"),
                                                   ("torchrun", "TorchElasticEnvironment")])
def test_cluster_ranks_reach_lightning_and_only_rank_0_creates_the_run_folder(tmp_path, launcher, environment):
    for rank in (1, 2, 0):  # node 0 local 1, node 1 local 0, then rank 0
        seen = _rank(tmp_path, launcher, rank)
        assert seen == {"env": environment, "global_rank": rank, "local_rank": rank % 2, "node_rank": rank // 2,
                        "world_size": 4, "starts_processes": False,  # the cluster starts every process itself
                        "run_folders": ["version_0"] if rank == 0 else []}
