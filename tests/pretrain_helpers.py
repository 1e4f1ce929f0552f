"""Run the real pretraining entry point from tests: in-process (one rank) or through the deepspeed launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "launcher"))

from pretrain import main as pretrain_main  # noqa: E402

FAST = [
    "--model_size", "tiny", "--log_steps", "1",
    "--ds", "optimizer.params.lr=2e-3", "--ds", "scheduler.params.warmup_num_steps=2",
    "--ds", "train_micro_batch_size_per_gpu=16",
]


def pretrain_args(shards: Path, out: Path, config: str = "zero2", steps: int = 12, *extra: str) -> list[str]:
    return ["--ds_config", str(ROOT / "ds_configs" / f"{config}.json"), "--data_dir", str(shards),
            "--output_dir", str(out), "--max_steps", str(steps), *FAST, *extra]


def run_pretrain(shards: Path, out: Path, config: str = "zero2", steps: int = 12, *extra: str) -> int:
    return pretrain_main(pretrain_args(shards, out, config, steps, *extra))


def run_deepspeed(num_procs: int, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    launcher = Path(sys.executable).parent / "deepspeed"  # the console script users run
    cmd = [str(launcher), "--num_gpus", str(num_procs),
           "--master_port", str(29500 + os.getpid() % 1000), str(ROOT / "launcher" / "pretrain.py"), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def train_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def eval_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "eval"]
