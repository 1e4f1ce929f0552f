"""Which launcher started this process, and the world it belongs to.

torch.distributed's ``env://`` rendezvous reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT. The ``deepspeed``
launcher and ``torchrun`` set them; ``srun`` and ``mpirun`` do not: they set their own variables (SLURM_PROCID,
OMPI_COMM_WORLD_RANK, PMI_RANK, ...). Reading only RANK turned every srun task into its own 1-rank run, all
writing one run directory. This module reads every launcher's variables, refuses a half-set environment with
what is missing, and writes the torch variables so that DeepSpeed's ``init_distributed`` forms one world.
Only a process with none of these variables is a 1-rank run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

ANY_PORT = 0
"""A 1-rank run's MASTER_PORT when none is set: torch's store binds a free port itself, in one step. (Picking a free
port first and binding it later lost it to whatever took it in between: another run's rank opening a connection gets
its local port from the same range.) Only a world of one can: no other rank has to find the port."""

TORCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_PORT = 29500


class LaunchError(ValueError):
    """The environment names a launcher but not everything the world needs; the message says what is missing."""


@dataclass(frozen=True)
class World:
    """This process's place in the run, as the launcher described it."""

    launcher: str
    """Who started the process: 'deepspeed', 'torchrun', 'srun', 'mpirun (Open MPI)', 'mpirun (MPICH/Intel MPI)',
    'environment' (RANK/WORLD_SIZE set by hand) or 'none' (a single process)."""
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int

    def describe(self) -> str:
        return (f"launcher {self.launcher}: rank {self.rank} of {self.world_size}, local rank {self.local_rank} of "
                f"{self.local_world_size} on this host, rendezvous {self.master_addr}:"
                f"{self.master_port or 'any free port'}")

    def export(self, environ: dict | None = None) -> None:
        """Write the torch.distributed variables (env:// rendezvous) for this world."""
        env = os.environ if environ is None else environ
        env.update(RANK=str(self.rank), WORLD_SIZE=str(self.world_size), LOCAL_RANK=str(self.local_rank),
                   LOCAL_WORLD_SIZE=str(self.local_world_size), MASTER_ADDR=self.master_addr,
                   MASTER_PORT=str(self.master_port))


def _int(env: dict, key: str, launcher: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise LaunchError(f"{launcher}: {key}={env[key]!r} is not a whole number") from None


def _require(env: dict, keys: tuple[str, ...], launcher: str, hint: str) -> None:
    missing = [k for k in keys if k not in env]
    if missing:
        have = sorted(k for k in env if k in keys)
        raise LaunchError(f"{launcher}: {', '.join(have)} set but {', '.join(missing)} missing, so this process cannot "
                          f"tell its place in the run. {hint}")


def _torch_style(env: dict) -> World:
    """RANK and WORLD_SIZE already set: by the deepspeed launcher, torchrun, or by hand."""
    if "TORCHELASTIC_RUN_ID" in env or "GROUP_RANK" in env:
        launcher = "torchrun"
    elif "CROSS_RANK" in env or "LOCAL_SIZE" in env:  # set by deepspeed's launch.py for each rank
        launcher = "deepspeed"
    else:
        launcher = "environment"
    _require(env, ("RANK", "WORLD_SIZE"), launcher,
             "Set both RANK and WORLD_SIZE (and MASTER_ADDR, MASTER_PORT), or start the ranks with deepspeed, "
             "torchrun, srun or mpirun.")
    rank, world = _int(env, "RANK", launcher), _int(env, "WORLD_SIZE", launcher)
    if world > 1:
        _require(env, ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"), launcher,
                 "Every rank needs the rendezvous address: set MASTER_ADDR (the first node) and MASTER_PORT.")
    local_rank = _int(env, "LOCAL_RANK", launcher) if "LOCAL_RANK" in env else rank if world == 1 else None
    if local_rank is None:
        raise LaunchError(f"{launcher}: WORLD_SIZE={world} but LOCAL_RANK is missing: each rank needs to know which "
                          "device on its host is its own. Set LOCAL_RANK, or start the ranks with a launcher.")
    local_world = env.get("LOCAL_WORLD_SIZE", env.get("LOCAL_SIZE"))
    return World(launcher, rank, world, local_rank, int(local_world) if local_world else world,
                 env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT") or ANY_PORT))


def first_host(nodelist: str) -> str:
    """The first host of a Slurm host list: 'gpu[03-05,9],cpu1' -> 'gpu03' (what `scontrol show hostnames`
    prints first; Slurm keeps the listed order and zero padding)."""
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise LaunchError(f"srun: cannot read the node list {nodelist!r}")
    prefix, ranges = m.group(1), m.group(2)
    if ranges is None:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def tasks_on_node(tasks_per_node: str, node_id: int) -> int:
    """Slurm's SLURM_STEP_TASKS_PER_NODE ('2(x3),1': 2 tasks on each of nodes 0-2, 1 on node 3) for one node."""
    seen = 0
    for part in tasks_per_node.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not m:
            raise LaunchError(f"srun: cannot read SLURM_STEP_TASKS_PER_NODE={tasks_per_node!r}")
        count, repeat = int(m.group(1)), int(m.group(2) or 1)
        if node_id < seen + repeat:
            return count
        seen += repeat
    raise LaunchError(f"srun: SLURM_NODEID={node_id} is past SLURM_STEP_TASKS_PER_NODE={tasks_per_node!r}")


def slurm_port(job_id: str) -> int:
    """A rendezvous port every task of the job derives alike: 15000 + the job id mod 20000 (two jobs sharing a
    first node get different ports unless their ids are 20000 apart; MASTER_PORT overrides it)."""
    return 15000 + int(re.sub(r"\D", "", job_id) or 0) % 20000


def _srun(env: dict) -> World:
    """Tasks of an srun job step: SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID are this task's place."""
    launcher = "srun"
    hint = ("Start one task per GPU with srun (for example `srun --ntasks-per-node=8 python launcher/pretrain.py "
            "...`); inside an sbatch script without srun, use the deepspeed or torchrun launcher instead.")
    ntasks_key = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"
    _require(env, ("SLURM_PROCID", ntasks_key, "SLURM_LOCALID", "SLURM_JOB_ID"), launcher, hint)
    rank, world = _int(env, "SLURM_PROCID", launcher), _int(env, ntasks_key, launcher)
    if not 0 <= rank < world:
        raise LaunchError(f"srun: SLURM_PROCID={rank} is not below {ntasks_key}={world}")
    local_rank = _int(env, "SLURM_LOCALID", launcher)
    node_id = int(env.get("SLURM_NODEID", "0"))
    per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    local_world = tasks_on_node(per_node, node_id) if per_node else world
    if "MASTER_ADDR" in env:
        addr = env["MASTER_ADDR"]
    else:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if nodelist:
            addr = first_host(nodelist)
        elif "SLURM_LAUNCH_NODE_IPADDR" in env and local_world == world:
            addr = env["SLURM_LAUNCH_NODE_IPADDR"]  # one node: the node that ran srun is reachable by every task
        else:
            raise LaunchError(f"srun: {world} tasks but no node list (SLURM_STEP_NODELIST) to find the first node "
                              "on: set MASTER_ADDR to it")
    port = int(env["MASTER_PORT"]) if env.get("MASTER_PORT") else slurm_port(env["SLURM_JOB_ID"])
    return World(launcher, rank, world, local_rank, local_world, addr, port)


def _mpi(env: dict, flavour: str, keys: tuple[str, str, str, str]) -> World:
    rank_key, size_key, local_key, local_size_key = keys
    launcher = f"mpirun ({flavour})"
    _require(env, (rank_key, size_key), launcher, "Start the ranks with mpirun (or srun, deepspeed, torchrun).")
    rank, world = _int(env, rank_key, launcher), _int(env, size_key, launcher)
    local_rank = int(env.get(local_key, rank if world == 1 else -1))
    local_world = int(env.get(local_size_key, world))
    if local_rank < 0:
        raise LaunchError(f"{launcher}: {local_key} is missing: each rank needs its rank on its host")
    if "MASTER_ADDR" in env:
        addr = env["MASTER_ADDR"]
    elif local_world == world:
        addr = "127.0.0.1"  # every rank on this host
    else:
        raise LaunchError(f"{launcher}: {world} ranks over several hosts and no MASTER_ADDR: pass the first host's "
                          "address to every rank, e.g. `mpirun -x MASTER_ADDR=node01 -x MASTER_PORT=29500 ...`")
    return World(launcher, rank, world, local_rank, local_world, addr, int(env.get("MASTER_PORT") or DEFAULT_PORT))


def detect(environ: dict | None = None) -> World:
    """This process's world, from the first launcher whose variables are present (see the module docstring)."""
    env = dict(os.environ if environ is None else environ)
    if "RANK" in env or "WORLD_SIZE" in env:
        return _torch_style(env)
    if "OMPI_COMM_WORLD_RANK" in env or "OMPI_COMM_WORLD_SIZE" in env:
        return _mpi(env, "Open MPI", ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                                      "OMPI_COMM_WORLD_LOCAL_SIZE"))
    if "PMI_RANK" in env or "PMI_SIZE" in env:
        return _mpi(env, "MPICH/Intel MPI", ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"))
    if "SLURM_PROCID" in env and ("SLURM_STEP_ID" in env or "SLURM_STEPID" in env):
        return _srun(env)
    ntasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    if ntasks and ntasks != "1" and "SLURM_JOB_ID" in env:
        # sbatch's own script (the batch step) or an salloc shell: Slurm allocated several tasks, but this process
        # was not started as one of them.
        raise LaunchError(f"Slurm allocated {ntasks} tasks (SLURM_NTASKS) but this process is not an srun task "
                          "(no SLURM_PROCID/SLURM_STEP_ID): start it with `srun python launcher/pretrain.py ...` "
                          "(one task per GPU), or with the deepspeed or torchrun launcher")
    return World("none", 0, 1, 0, 1, "127.0.0.1", int(env.get("MASTER_PORT") or ANY_PORT))
