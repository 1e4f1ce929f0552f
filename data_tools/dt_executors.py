"""The datatrove executors data_tools runs its stages on: each stage a LocalPipelineExecutor (tasks on this machine)
or a SlurmPipelineExecutor (a SLURM job array running this venv's `launch_pickled_pipeline`), each depending on the
one before. Used by `near-dups --executor` (data_tools/dt_near_dups.py) and `pack --executor` (data_tools/dt_pack.py).
"""

from __future__ import annotations

import sys
from pathlib import Path


def require_datatrove() -> None:
    try:
        import datatrove  # noqa: F401
    except ImportError:
        raise ValueError("--executor local/slurm runs on datatrove: pip install 'roberta-ds[crawl]' "
                         "(or pip install datatrove)") from None


def chain(stages: list[tuple[str, list, int]], *, executor: str, logs: Path, job_prefix: str, local_workers: int,
          slurm_partition: str | None, slurm_time: str, cpus_per_task: int, mem_per_cpu_gb: int) -> list:
    """(name, pipeline, tasks) stages as executors, each depending on the one before; running (or, on SLURM,
    submitting) the last runs the others first. Logs and completion files go to LOGS/NAME: a rerun skips the tasks
    finished."""
    from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor

    out, before = [], None
    for name, pipeline, tasks in stages:
        if executor == "slurm":
            ex = SlurmPipelineExecutor(
                pipeline=pipeline, tasks=tasks, job_name=f"{job_prefix}-{name}", logging_dir=str(logs / name),
                depends=before, partition=slurm_partition, time=slurm_time, cpus_per_task=cpus_per_task,
                mem_per_cpu_gb=mem_per_cpu_gb, skip_completed=True,
                venv_path=str(Path(sys.prefix) / "bin" / "activate") if sys.prefix != sys.base_prefix else None)
        else:
            ex = LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(local_workers, tasks),
                                       logging_dir=str(logs / name), depends=before, skip_completed=True)
        out.append(ex)
        before = ex
    return out
