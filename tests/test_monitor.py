"""Live metrics through DeepSpeed's monitor: what the CSV monitor and TensorBoard hold is what metrics.jsonl
holds, on DeepSpeed's x-axis (sequences seen), also across a resume from an earlier checkpoint."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from pretrain_helpers import eval_records, run_pretrain, train_records

from roberta_ds.training.observe.metrics import WINDOW_METRICS
from roberta_ds.training.observe.monitor import EVAL_SERIES, TRAIN_SERIES

MONITORED = ("--ds", "csv_monitor.enabled=true", "--ds", "tensorboard.enabled=true",
             "--eval_steps", "6", "--eval_max_sequences", "32", "--save_steps", "4")


def read_csv_series(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    series = {}
    for path in sorted(log_dir.glob("*.csv")):
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0][0] == "step" and all(r[0] != "step" for r in rows[1:]), f"{path.name}: one header"
        series[path.stem] = [(int(r[0]), float(r[1])) for r in rows[1:]]
    return series


def read_tensorboard(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def expected(run: Path, global_batch: int) -> dict[str, list[tuple[int, float]]]:
    want = {name: [(r["sequences_seen"], r[field]) for r in train_records(run)] for name, field in TRAIN_SERIES.items()}
    want |= {f"Train/Samples/{m.name}": [(r["sequences_seen"], r[m.name]) for r in train_records(run)]
             for m in WINDOW_METRICS}  # each window metric its series, with no line of monitor.py naming it
    want |= {name: [(r["step"] * global_batch, r[field]) for r in eval_records(run)]
             for name, field in EVAL_SERIES.items()}
    return want


def assert_series_match(got: dict, want: dict, rel: float) -> None:
    for name, points in want.items():
        assert [s for s, _ in got[name]] == [s for s, _ in points], name
        assert [v for _, v in got[name]] == pytest.approx([v for _, v in points], rel=rel), name


def test_monitors_carry_the_logged_metrics_across_a_resume(shard_dir: Path, tmp_path: Path):
    out = tmp_path / "run"
    # stops at step 8 with checkpoints at 4 and 8; resuming from 4 re-does 5..8, as after a crash at step 8
    assert run_pretrain(shard_dir, out, "zero2", 12, *MONITORED, "--stop_at_step", "8") == 0
    shutil.rmtree(out / "checkpoints" / "global_step8")
    assert run_pretrain(shard_dir, out, "zero2", 12, *MONITORED, "--resume_from_checkpoint",
                        str(out / "checkpoints" / "global_step4")) == 0
    gb = train_records(out)[0]["sequences_seen"]  # step 1
    steps = [r["step"] for r in train_records(out)]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # metrics.jsonl itself continued without repeats
    want = expected(out, gb)
    assert all(v is not None for _, v in want["Train/Samples/grad_norm"])  # ZeRO-2 computes it
    assert all(0.9 < v <= 1.0 for _, v in want["Train/Samples/fill"])  # packed sequences: little padding

    csv_dir = out / "csv_monitor" / out.name  # where the run puts them when the JSON does not say
    got = read_csv_series(csv_dir)
    assert_series_match({k.replace("_", "/", 2): v for k, v in got.items()}, want, rel=1e-12)
    # DeepSpeed's own learning-rate series, once per step, on the same axis; not written a second time by us
    assert [s for s, _ in got["Train_Samples_lr"]] == [gb * k for k in range(1, 13)]
    assert set(got) == {"Train_Samples_lr"} | {n.replace("/", "_") for n in want}

    tb = read_tensorboard(out / "tensorboard" / out.name)
    assert_series_match(tb, want, rel=1e-6)  # TensorBoard stores float32
    assert [s for s, _ in tb["Train/Samples/lr"]] == [gb * k for k in range(1, 13)]


def test_wandb_offline_continues_one_run_across_a_requeue_and_writes_under_the_run(shard_dir: Path, tmp_path: Path,
                                                                                 monkeypatch):
    # W&B's offline mode, as a requeued job meets it: the second start resumes the first's W&B run (the same id),
    # and W&B's files go under the run directory, not ./wandb in the working directory.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_RUN_ID", "WANDB_RESUME", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    args = ("--ds", "wandb.enabled=true", "--ds", "wandb.project=roberta-ds-test", "--save_steps", "2")
    assert run_pretrain(shard_dir, out, "zero2", 4, *args, "--stop_at_step", "2") == 0
    run_id = (out / "wandb_run_id").read_text().strip()
    for var in ("WANDB_RUN_ID", "WANDB_RESUME", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)  # a requeued job is a new process: nothing carried in the environment
    import wandb

    wandb.finish()
    assert run_pretrain(shard_dir, out, "zero2", 4, *args, "--resume_from_checkpoint", "auto") == 0
    wandb.finish()
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(p.name.endswith(f"-{run_id}") for p in runs), runs
    assert not (tmp_path / "wandb").exists()
