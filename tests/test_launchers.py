"""Every launcher users have forms one world: srun (no RANK, only SLURM_* variables), torchrun, mpirun, the
deepspeed launcher; a half-set environment is refused with what is missing; only a process with none of these
is a 1-rank run. The multi-process runs must reproduce the deepspeed launcher's 2-rank losses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TWO_RANK_ARGS
from pretrain_helpers import ROOT, eval_records, free_port, pretrain_args, single_process_env, train_records

from roberta_ds.training.engine.launch_env import LaunchError, World, detect, first_host, slurm_port, tasks_on_node

FAKE_SLURM = Path(__file__).resolve().parent / "fake_slurm"

SRUN_TASK = {  # what srun sets for task 1 of a 2-task step on node "gpu07" of job 81234 (no RANK, no MASTER_*)
    "SLURM_JOB_ID": "81234", "SLURM_JOBID": "81234", "SLURM_STEP_ID": "0", "SLURM_STEPID": "0",
    "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_NODEID": "0", "SLURM_NTASKS": "2", "SLURM_NPROCS": "2",
    "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NUM_NODES": "1", "SLURM_NNODES": "1",
    "SLURM_STEP_NODELIST": "gpu07", "SLURM_JOB_NODELIST": "gpu07", "SLURM_NODELIST": "gpu07",
    "SLURM_STEP_TASKS_PER_NODE": "2", "SLURM_TASKS_PER_NODE": "2", "SLURM_LAUNCH_NODE_IPADDR": "10.1.2.3",
    "SLURM_SRUN_COMM_HOST": "10.1.2.3", "SLURMD_NODENAME": "gpu07", "SLURM_GTIDS": "0,1",
}


def test_srun_variables_give_rank_world_and_rendezvous():
    w = detect(SRUN_TASK)
    assert w == World("srun", rank=1, world_size=2, local_rank=1, local_world_size=2, master_addr="gpu07",
                      master_port=slurm_port("81234"))
    # Several nodes: the rendezvous is the step's first node; this task's host runs the tasks listed for it.
    multi = {**SRUN_TASK, "SLURM_PROCID": "13", "SLURM_LOCALID": "5", "SLURM_NODEID": "1", "SLURM_NTASKS": "16",
             "SLURM_STEP_NUM_TASKS": "16", "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_STEP_TASKS_PER_NODE": "8(x2)",
             "MASTER_PORT": "29600"}
    w = detect(multi)
    assert (w.rank, w.world_size, w.local_rank, w.local_world_size) == (13, 16, 5, 8)
    assert (w.master_addr, w.master_port) == ("gpu07", 29600)  # MASTER_PORT, when set, wins over the derived one


def test_slurm_host_lists_and_task_counts():
    assert first_host("gpu[03-05,9],cpu1") == "gpu03" and first_host("node7,node2") == "node7"
    assert first_host("a-b-[0010-0012]") == "a-b-0010"
    assert [tasks_on_node("2(x3),1", n) for n in range(4)] == [2, 2, 2, 1]
    with pytest.raises(LaunchError, match="SLURM_NODEID=4 is past"):
        tasks_on_node("2(x3),1", 4)


def test_torchrun_deepspeed_and_mpi_variables():
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "n1",
                "MASTER_PORT": "29400", "TORCHELASTIC_RUN_ID": "x", "GROUP_RANK": "1"}
    assert detect(torchrun) == World("torchrun", 3, 4, 1, 2, "n1", 29400)
    ds = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
          "CROSS_RANK": "0", "CROSS_SIZE": "1", "LOCAL_SIZE": "2"}
    assert detect(ds) == World("deepspeed", 1, 2, 1, 2, "127.0.0.1", 29500)
    ompi = {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "0",
            "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "MASTER_ADDR": "n1"}
    assert detect(ompi) == World("mpirun (Open MPI)", 2, 4, 0, 2, "n1", 29500)
    mpich = {"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"}
    assert detect(mpich) == World("mpirun (MPICH/Intel MPI)", 1, 2, 1, 2, "127.0.0.1", 29500)
    alone = detect({"PATH": "/usr/bin"})
    # port 0: torch's store binds a free port itself
    assert (alone.launcher, alone.rank, alone.world_size, alone.master_port) == ("none", 0, 1, 0)


@pytest.mark.parametrize("env, message", [
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "16"}, "Slurm allocated 16 tasks .* not an srun task"),
    ({"WORLD_SIZE": "8"}, "WORLD_SIZE set but RANK missing"),
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, "MASTER_ADDR, MASTER_PORT missing"),
    ({**{k: v for k, v in SRUN_TASK.items() if k != "SLURM_LOCALID"}}, "srun: .* SLURM_LOCALID missing"),
    ({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "0",
      "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, "no MASTER_ADDR: pass the first host"),
])
def test_a_half_set_environment_is_refused_naming_what_is_missing(env, message):
    with pytest.raises(LaunchError, match=message):
        detect(env)


@pytest.mark.slow
def test_the_pretrain_command_refuses_a_half_set_environment(shard_dir: Path, tmp_path: Path):
    # As users meet it: the command exits 2 with the message before training, and writes no run.
    env = {**single_process_env(), "SLURM_JOB_ID": "7", "SLURM_NTASKS": "16"}
    proc = subprocess.run([sys.executable, str(ROOT / "launcher" / "pretrain.py"),
                           *pretrain_args(shard_dir, tmp_path / "run", "zero2", 4)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Slurm allocated 16 tasks (SLURM_NTASKS) but this process is not an srun task" in proc.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def _same_losses(run: Path, reference: Path) -> None:
    a = [(r["step"], r["loss"]) for r in train_records(run) + eval_records(run)]
    b = [(r["step"], r["loss"]) for r in train_records(reference) + eval_records(reference)]
    assert [s for s, _ in a] == [s for s, _ in b]
    for (step, x), (_, y) in zip(a, b):
        assert x == pytest.approx(y, abs=1e-6), step


def _launch_args(out: Path, shards: Path) -> list[str]:
    return pretrain_args(shards, out, "zero2", 8, *TWO_RANK_ARGS, "--ds", "train_micro_batch_size_per_gpu=8")


@pytest.mark.multiproc
def test_the_slurm_script_under_srun_forms_one_two_rank_run(shard_dir: Path, tmp_path: Path, two_rank_run):
    """launcher/slurm/pretrain.sbatch as sbatch runs it, with srun starting 2 tasks with srun's variables only
    (tests/fake_slurm/srun): one 2-rank run, whose losses are the deepspeed launcher's."""
    run = tmp_path / "run"
    args = _launch_args(run, shard_dir)
    extra = args[args.index("--max_steps"):]  # the script passes --ds_config, --data_dir and --output_dir itself
    env = {**single_process_env(), "PATH": f"{FAKE_SLURM}:{os.environ['PATH']}", "PYTHON": sys.executable,
           "ROBERTA_DS_ROOT": str(ROOT), "SLURM_JOB_ID": str(20000 + os.getpid() % 10000), "SLURM_NTASKS": "2",
           "SLURM_JOB_NODELIST": "localhost", "DATA_DIR": str(shard_dir), "RUN_DIR": str(run),
           "DS_CONFIG": str(ROOT / "ds_configs" / "zero2.json"), "FAKE_SCONTROL_LOG": str(tmp_path / "scontrol")}
    proc = subprocess.run(["bash", str(ROOT / "launcher" / "slurm" / "pretrain.sbatch"), *extra], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2
    assert json.loads((run / "effective_config.json").read_text())["launcher"] == "srun"
    assert "launcher srun: rank 0 of 2" in " ".join(proc.stdout.split())
    assert not (tmp_path / "scontrol").exists()  # finished: nothing to requeue
    _same_losses(run, two_rank_run("zero2"))


def test_the_slurm_script_requeues_the_job_when_the_run_stops_for_requeue(tmp_path: Path):
    # srun returns the tasks' exit status 75 (preempted, checkpoint saved): the script requeues its job.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 75\n")
    (fake / "srun").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{FAKE_SLURM}:{os.environ['PATH']}", "SLURM_JOB_ID": "555",
           "DATA_DIR": "d", "RUN_DIR": "r", "FAKE_SCONTROL_LOG": str(tmp_path / "scontrol")}
    proc = subprocess.run(["bash", str(ROOT / "launcher" / "slurm" / "pretrain.sbatch")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "requeueing" in proc.stdout
    assert (tmp_path / "scontrol").read_text().split() == ["requeue", "555"]


@pytest.mark.multiproc
def test_torchrun_forms_one_two_rank_run(shard_dir: Path, tmp_path: Path, two_rank_run):
    run = tmp_path / "run"
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port()),
                           str(ROOT / "launcher" / "pretrain.py"), *_launch_args(run, shard_dir)],
                          env={**single_process_env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2
    assert json.loads((run / "effective_config.json").read_text())["launcher"] == "torchrun"
    _same_losses(run, two_rank_run("zero2"))
