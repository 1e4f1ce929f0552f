"""Live metrics in the tools users already watch, through DeepSpeed's own monitor.

The DeepSpeed JSON enables them (``"tensorboard"``, ``"csv_monitor"``, ``"wandb"``); DeepSpeed 0.19 itself
writes only the learning rate (``Train/Samples/lr``) and, with fp16, the loss scale (``Train/Samples/loss_scale``).
The trainer writes everything else it logs through ``engine.monitor`` (rank 0), under the names below and on
DeepSpeed's x-axis: global samples (sequences) seen, so every series lines up with DeepSpeed's own. The values
are exactly those of ``metrics.jsonl`` (records.py and metrics.py define them); the learning rate and the loss scale are not
written twice.

A resumed run continues the same series: the CSV files lose the rows after the checkpoint (and keep one
header), and TensorBoard is told to purge the events after it (``purge_step``), as metrics.jsonl is truncated.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import uuid
from pathlib import Path

from roberta_ds.training.observe import metrics
from roberta_ds.training.observe.records import Evaluation, TrainWindow

MONITORS = ("tensorboard", "csv_monitor", "wandb")
"""The DeepSpeed JSON sections this module writes through (``"enabled": true`` turns one on)."""

TRAIN_SERIES = {
    "Train/Samples/loss": "loss",
    "Train/Samples/accuracy": "accuracy",
    "Train/Samples/tokens_per_s": "tokens_per_s",
    "Train/Samples/tokens_seen": "tokens_seen",
    "Train/Samples/skipped_steps": "skipped_steps",
}
"""Monitor name -> the TrainWindow field it carries (each logging window, x = sequences_seen); the window metrics
(metrics.py) add Train/Samples/<name> each."""

EVAL_SERIES = {
    "Eval/Samples/loss": "loss",
    "Eval/Samples/perplexity": "perplexity",
    "Eval/Samples/accuracy": "accuracy",
    "Eval/Samples/below_unigram": "below_unigram",
}
"""Monitor name -> the Evaluation field it carries (each evaluation, x = sequences seen at its step)."""

_PACKAGES = {"tensorboard": ("tensorboard", "pip install tensorboard (or -e '.[tensorboard]')"),
             "wandb": ("wandb", "pip install wandb, then `wandb login` (or WANDB_MODE=offline)")}


def enabled(ds_cfg: dict) -> list[str]:
    return [m for m in MONITORS if isinstance(ds_cfg.get(m), dict) and ds_cfg[m].get("enabled") is True]


WANDB_ID_NAME = "wandb_run_id"
"""RUN/wandb_run_id: the W&B run this run logs to, kept so that a requeued or resumed run continues it."""


def place_outputs(ds_cfg: dict, out: Path, *, is_main: bool = True) -> list[str]:
    """Where an enabled monitor writes when the JSON does not say: RUN/tensorboard/RUN_NAME and
    RUN/csv_monitor/RUN_NAME (DeepSpeed's default is ./DeepSpeedJobName in the working directory, shared by
    every run); W&B under RUN/wandb, continuing the run's W&B run across resumes. Edits ``ds_cfg`` in place;
    returns the problems (a monitor whose package is missing)."""
    problems = []
    for kind in enabled(ds_cfg):
        section = ds_cfg[kind]
        if kind in ("tensorboard", "csv_monitor"):
            if not section.get("output_path"):
                section["output_path"] = str(out.resolve() / kind)
            section.setdefault("job_name", out.resolve().name)
        if kind == "wandb":
            _continue_wandb_run(out.resolve(), is_main)
        package, install = _PACKAGES.get(kind, (None, None))
        if package and importlib.util.find_spec(package) is None:
            problems.append(f"{kind}.enabled = true but the {package!r} package is not installed: {install}")
    return problems


def _continue_wandb_run(out: Path, is_main: bool) -> None:
    """DeepSpeed's W&B monitor calls wandb.init(project, group, entity) and nothing else, so every requeue
    started a new W&B run, writing ./wandb in the working directory. wandb.init also reads WANDB_RUN_ID,
    WANDB_RESUME and WANDB_DIR: the run's id is kept in RUN/wandb_run_id and passed on every start, and the
    files go under RUN/. A variable the user set wins."""
    id_file = out / WANDB_ID_NAME
    if is_main and not id_file.exists():
        out.mkdir(parents=True, exist_ok=True)
        id_file.write_text(uuid.uuid4().hex[:16] + "\n", encoding="utf-8")
    if id_file.exists():
        os.environ.setdefault("WANDB_RUN_ID", id_file.read_text(encoding="utf-8").strip())
        os.environ.setdefault("WANDB_RESUME", "allow")
    os.environ.setdefault("WANDB_DIR", str(out))


class LiveMetrics:
    """Writes the trainer's records through ``engine.monitor`` (a no-op when no monitor is enabled)."""

    def __init__(self, engine, global_batch: int) -> None:
        self.monitor = getattr(engine, "monitor", None)
        self.enabled = bool(self.monitor is not None and self.monitor.enabled)
        self.global_batch = global_batch

    def window(self, rec: TrainWindow) -> None:
        self._write(TRAIN_SERIES, rec, rec.sequences_seen)
        if self.enabled and (events := metrics.series(rec.metrics)):
            self.monitor.write_events([(name, v, rec.sequences_seen) for name, v in events])
        if self.enabled and rec.sources:  # Train/Samples/share/NAME: the source's share of the window's tokens
            self.monitor.write_events([(f"Train/Samples/share/{n}", float(v["share"]), rec.sequences_seen)
                                       for n, v in rec.sources.items()])

    def evaluation(self, ev: Evaluation) -> None:
        self._write(EVAL_SERIES, ev, ev.step * self.global_batch)
        if self.enabled and (ev.sources or ev.lengths):  # Eval/Samples/loss/NAME and Eval/Samples/loss_at_LEN
            x = ev.step * self.global_batch
            events = [(f"Eval/Samples/loss/{n}", float(r["loss"]), x) for n, r in (ev.sources or {}).items()]
            events += [(f"Eval/Samples/loss_at_{L}", float(r["loss"]), x) for L, r in (ev.lengths or {}).items()]
            self.monitor.write_events(events)

    def phase(self, k: int, step: int) -> None:
        """Nothing: the windows carry their length."""

    def _write(self, series: dict[str, str], rec, samples: int) -> None:
        if not self.enabled:
            return
        events = [(name, float(getattr(rec, field)), samples) for name, field in series.items()
                  if getattr(rec, field, None) is not None]
        self.monitor.write_events(events)

    def header(self, warnings: list[str]) -> None:
        """Nothing: the run's settings reach the monitors through DeepSpeed's own config."""

    def resumed(self, tag_dir, state) -> None:
        """Continue the series from the checkpoint at ``state.sequences_seen`` samples: drop what was written after
        it (rank 0 holds the writers; on other ranks they are None)."""
        if not self.enabled:
            return
        samples = state.sequences_seen
        csv_mon = getattr(self.monitor, "csv_monitor", None)
        if csv_mon is not None and csv_mon.log_dir:
            for path in sorted(Path(csv_mon.log_dir).glob("*.csv")):
                _truncate_csv(path, samples)
                if path.stem not in csv_mon.filenames:  # DeepSpeed writes the header for files it has not seen
                    csv_mon.filenames.append(path.stem)
        tb = getattr(self.monitor, "tb_monitor", None)
        if tb is not None and tb.summary_writer is not None:
            from torch.utils.tensorboard import SummaryWriter

            log_dir = tb.summary_writer.log_dir
            tb.summary_writer.close()
            # TensorBoard hides the events of earlier files at x >= purge_step
            tb.summary_writer = SummaryWriter(log_dir=log_dir, purge_step=samples + 1)


def _truncate_csv(path: Path, samples: int) -> None:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header = rows[0]
    kept = [r for r in rows[1:] if r and r != header and r[0].isdigit() and int(r[0]) <= samples]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *kept])
