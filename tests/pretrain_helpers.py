"""Run the real entry points from tests: pretraining in-process (one rank), in a subprocess, or through the
deepspeed launcher; the other launcher commands in-process. One tiny-run recipe for all of them."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

from roberta_ds import records

ROOT = Path(__file__).resolve().parent.parent


def launcher_module(name: str):
    """The command NAME (roberta_ds/commands/NAME.py, which launcher/NAME.py and roberta-ds-NAME run)."""
    return importlib.import_module(f"roberta_ds.commands.{name}")


def launcher_main(name: str):
    """``main`` of the command NAME."""
    return launcher_module(name).main


pretrain_main = launcher_main("pretrain")

FAST = [
    "--model_size", "tiny", "--log_steps", "1",
    "--ds", "optimizer.params.lr=2e-3", "--ds", "scheduler.params.warmup_num_steps=2",
    "--ds", "train_micro_batch_size_per_gpu=16",
]
"""The tiny-run recipe: a 2-layer model that learns within a dozen steps on the test corpus."""


def pretrain_args(shards: Path, out: Path, config: str = "zero2", steps: int = 12, *extra: str) -> list[str]:
    return ["--ds_config", str(ROOT / "ds_configs" / f"{config}.json"), "--data_dir", str(shards),
            "--output_dir", str(out), "--max_steps", str(steps), *FAST, *extra]


def run_pretrain(shards: Path, out: Path, config: str = "zero2", steps: int = 12, *extra: str) -> int:
    return pretrain_main(pretrain_args(shards, out, config, steps, *extra))


def single_process_env() -> dict[str, str]:
    """This process's environment without the launcher's rank variables, so a child process starts its own
    single-process group instead of joining (or clashing with) the test process's."""
    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}


def deepspeed_command(num_procs: int, args: list[str]) -> tuple[list[str], dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    launcher = Path(sys.executable).parent / "deepspeed"  # the console script users run
    cmd = [str(launcher), "--num_gpus", str(num_procs),
           "--master_port", str(29500 + os.getpid() % 1000), str(ROOT / "launcher" / "pretrain.py"), *args]
    return cmd, env


def run_deepspeed(num_procs: int, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    cmd, env = deepspeed_command(num_procs, args)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


TINY_RUN = ("--log_steps", "4", "--eval_steps", "6", "--eval_max_sequences", "32", "--save_steps", "12")
"""The shared finished run's extras (conftest.tiny_run): windows, evaluations and one checkpoint."""


def train_tiny(data_dir: Path, out: Path) -> Path:
    """A 12-step tiny pretraining run through the real launcher script and DeepSpeed engine (a subprocess, so
    each run gets a fresh process group); returns the run directory."""
    cmd = [sys.executable, str(ROOT / "launcher" / "pretrain.py"), *pretrain_args(data_dir, out, "zero2", 12, *TINY_RUN)]
    proc = subprocess.run(cmd, cwd=ROOT, env=single_process_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def train_records(run: Path) -> list[dict]:
    """The run's training windows (records.TrainWindow), as the dicts metrics.jsonl holds."""
    return [r.to_dict() for r in records.windows(records.read_metrics(run))]


def eval_records(run: Path) -> list[dict]:
    """The run's evaluations (records.Evaluation), as the dicts metrics.jsonl holds."""
    return [r.to_dict() for r in records.evaluations(records.read_metrics(run))]
