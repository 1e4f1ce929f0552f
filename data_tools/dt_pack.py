"""`data_tools pack --executor local|slurm --parts N --part_by files --drop_list DIR`: a multi-machine pack as
datatrove tasks. Task i packs part i+1 of N (`pack --part i+1/N --part_by files`: it reads only its input files) into
OUTPUT.parts/part{i+1}; when every part has finished, one task merges them into OUTPUT (`data_tools merge`). On SLURM
these are two job arrays, the merge depending on the parts (datatrove's SlurmPipelineExecutor writes and submits
both). Killed or requeued? Run the same command again: finished parts are skipped (datatrove's completion files), an
unfinished one resumes as any pack does.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console

from data_tools.dt_executors import chain, require_datatrove


def parts_root(cfg) -> Path:
    return cfg.output.parent / (cfg.output.name + ".parts")


def executors(cfg):
    from datatrove.pipeline.base import PipelineStep

    root = parts_root(cfg)
    inline = replace(cfg, executor="inline", parts=1, part=f"1/{cfg.parts}")  # each task sets its own part

    class PackPart(PipelineStep):
        name = "📦 pack a part (--part_by files)"
        type = "💽 - WRITER"

        def run(self, data=None, rank: int = 0, world_size: int = 1):
            from data_tools.pack_job import run_pack

            run_pack(replace(inline, part=f"{rank + 1}/{world_size}", output=root / f"part{rank + 1}"),
                     Console(stderr=True))

    class MergeParts(PipelineStep):
        name = "🔗 merge the parts"
        type = "💽 - WRITER"

        def run(self, data=None, rank: int = 0, world_size: int = 1):
            from data_tools.config import MergeConfig
            from data_tools.merge import run_merge

            run_merge(MergeConfig([root / f"part{i}" for i in range(1, cfg.parts + 1)], cfg.output),
                      Console(stderr=True))

    stages = [("parts", [PackPart()], cfg.parts), ("merge", [MergeParts()], 1)]
    return chain(stages, executor=cfg.executor, logs=root / "logs", job_prefix="pack", local_workers=1,
                 slurm_partition=cfg.slurm_partition, slurm_time=cfg.slurm_time, cpus_per_task=cfg.workers,
                 mem_per_cpu_gb=max(1, cfg.slurm_mem_gb // cfg.workers))


def run_pack_stages(cfg, console: Console) -> None:
    """Run (local) or submit (slurm) the parts and their merge; pack_job.run_pack has checked the drop list."""
    require_datatrove()
    parts_root(cfg).mkdir(parents=True, exist_ok=True)
    stages = executors(cfg)
    stages[-1].run()
    if cfg.executor == "slurm":
        console.print(f"pack: submitted SLURM jobs {', '.join(f'{e.job_name} {e.job_id}' for e in stages)}; the "
                      f"parts go to {parts_root(cfg)}, the merged dataset to {cfg.output} (complete when its "
                      "manifest.json appears)")
    else:
        console.print(f"pack: {cfg.parts} parts in {parts_root(cfg)} merged into {cfg.output}")
