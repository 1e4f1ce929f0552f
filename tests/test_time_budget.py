"""--time_budget: the lr schedule and the stop follow the wall clock, through the real engine; resume keeps the clock."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pretrain_helpers import ROOT, eval_records, pretrain_main, train_records

from roberta_ds.training.loop.schedule import parse_duration

BUDGET_S = 12.0


def budget_args(shards: Path, out: Path, *extra: str) -> list[str]:
    return ["--ds_config", str(ROOT / "ds_configs" / "zero2.json"), "--data_dir", str(shards), "--output_dir", str(out),
            "--model_size", "tiny", "--log_steps", "5", "--eval_max_sequences", "16", "--dropout", "0",
            "--ds", "optimizer.params.lr=2e-3", "--ds", "scheduler.params.warmup_num_steps=5",
            "--ds", "train_micro_batch_size_per_gpu=8", *extra]


def test_parse_duration():
    assert [parse_duration(x) for x in ("12m", "20h", "1h30m", "90s", "2.5h", "5")] == [720, 72000, 5400, 90, 9000, 300]
    with pytest.raises(ValueError, match="'12 minutes' is not a duration: write e.g. 12m"):
        parse_duration("12 minutes")


@pytest.mark.slow
def test_time_budget_ends_annealed_on_time_and_resumes_with_its_clock(shard_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    args = budget_args(shard_dir, run, "--time_budget", f"{BUDGET_S:g}s", "--eval_time", "5s",
                       "--save_steps", "20", "--save_total_limit", "0")
    assert pretrain_main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    # It stopped at the first agreement point (every 5 steps) past the budget, or at the projected last step
    # when that came first (then less than 5 steps' time early).
    assert BUDGET_S - 1.0 <= summary["elapsed_s"] < BUDGET_S + 3.0, summary["elapsed_s"]
    assert summary["steps"] >= 30
    train = train_records(run)
    peak = max(r["lr"] for r in train)
    assert peak == pytest.approx(2e-3, rel=0.2)  # the warmup reached the configured peak...
    assert train[-1]["lr"] < 0.15 * peak  # ...and the decay ran out with the time: the run ended annealed
    # Timed evaluations: at start, every 5 s of the run's clock, and at the end.
    evals = eval_records(run)
    assert evals[0]["step"] == 0 and evals[-1]["step"] == summary["steps"] and len(evals) >= 3
    assert all(e["elapsed_s"] >= 5.0 for e in evals[1:-1])
    assert summary["eval"]["loss"] < evals[0]["loss"] - 1.0

    # Resume from a mid-run checkpoint: the clock continues from what the checkpoint recorded, so the
    # resumed run spends only the rest of the budget.
    mid = sorted((run / "checkpoints").glob("global_step*"), key=lambda p: int(p.name[11:]))[0]
    state = json.loads((mid / "roberta_ds_state.json").read_text())
    assert 0 < state["clock"]["elapsed_s"] < BUDGET_S and state["clock"]["projected_total_steps"] > state["step"]
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(mid, resumed / "checkpoints" / mid.name)
    assert pretrain_main([*args[:5], str(resumed), *args[6:], "--resume_from_checkpoint", "auto"]) == 0
    again = json.loads((resumed / "summary.json").read_text())
    assert BUDGET_S - 1.0 <= again["elapsed_s"] < BUDGET_S + 3.0
    first = train_records(resumed)[0]
    assert first["step"] > state["step"] and first["lr"] < peak  # continues in the decay, not a new warmup


def test_time_budget_refuses_what_it_cannot_honour(shard_dir: Path, tmp_path: Path, capsys):
    args = budget_args(shard_dir, tmp_path / "run", "--time_budget", "10m")
    assert pretrain_main([*args, "--max_steps", "5"]) == 2
    assert "choose one way to end the run" in capsys.readouterr().err
    assert pretrain_main([*args[:-2], "--time_budget", "ten minutes"]) == 2
    assert "'ten minutes' is not a duration" in capsys.readouterr().err
    assert pretrain_main([*args, "--ds", "scheduler.params.total_num_steps=100"]) == 2
    err = capsys.readouterr().err
    assert "--time_budget needs a scheduler whose decay the budget can place" in err and "total_num_steps 100" in err
