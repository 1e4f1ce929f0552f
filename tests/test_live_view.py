"""What a user watching a run sees: on a terminal, the live view (progress, the last held-out result, when the
next checkpoint and evaluation come); in a log file, plain lines, one per log step and one per evaluation."""

from __future__ import annotations

import io
import re
from pathlib import Path

from pretrain_helpers import eval_records, launcher_module, pretrain_args, train_records
from rich.console import Console

from roberta_ds.training.build import build_run
from roberta_ds.training.trainer import Trainer

LIVE = ("--eval_steps", "4", "--eval_max_sequences", "16", "--save_steps", "6")


def train_with_console(shard_dir: Path, out: Path, terminal: bool) -> str:
    run = build_run(launcher_module("pretrain").parse_args(pretrain_args(shard_dir, out, "zero2", 8, *LIVE)))
    buf = io.StringIO()
    run.console = Console(file=buf, force_terminal=terminal, width=400, color_system="standard" if terminal else None)
    Trainer(run).train()
    return buf.getvalue()


def test_the_live_view_shows_the_last_eval_and_what_comes_next(shard_dir: Path, tmp_path: Path):
    text = train_with_console(shard_dir, tmp_path / "run", terminal=True)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # the terminal's escape codes
    # after step 1 (log every step): the checkpoint at 6 and the evaluation at 4 are 5 and 3 steps away
    assert "checkpoint in 5 steps (~" in plain and "eval in 3 steps (~" in plain
    for ev in eval_records(tmp_path / "run"):
        assert f"held-out {ev['loss']:.4f} at step {ev['step']}" in plain


def test_a_log_file_gets_plain_lines_one_per_log_step(shard_dir: Path, tmp_path: Path):
    text = train_with_console(shard_dir, tmp_path / "run", terminal=False)
    assert "\x1b[" not in text and "checkpoint in" not in text
    lines = text.splitlines()
    steps = [int(m.group(1)) for ln in lines if (m := re.match(r"step (\d+)/8 epoch", ln))]
    assert steps == [r["step"] for r in train_records(tmp_path / "run")] == list(range(1, 9))
    assert len([ln for ln in lines if ln.startswith("eval step ")]) == len(eval_records(tmp_path / "run")) == 3
