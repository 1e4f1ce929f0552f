"""A window metric is one class: listed in WINDOW_METRICS, it is computed when a window closes, written to
metrics.jsonl, read back, shown on the console's line, sent to the monitors and defined in the report, with no
other file changed. (The real run's series, grad_norm and fill included, are checked in test_monitor.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from roberta_ds.reports.report import facts, load_run
from roberta_ds.training.observe import metrics
from roberta_ds.training.observe.monitor import LiveMetrics
from roberta_ds.training.observe.records import MetricsLog, TrainWindow, read_metrics
from roberta_ds.training.observe.totals import WindowTotals


class MaskedShare(metrics.WindowMetric):
    name = "masked_share"
    definition = "masked tokens / non-padding tokens of the window, all ranks"

    def compute(self, window: metrics.Window) -> float | None:
        return window.totals.masked / window.totals.tokens


class Events:
    """What DeepSpeed's monitor receives (its write_events interface)."""

    enabled = True

    def __init__(self) -> None:
        self.events = []

    def write_events(self, events) -> None:
        self.events += events


def window_record(values: dict) -> TrainWindow:
    return TrainWindow(step=4, epoch=0, loss=7.5, window_steps=4, window_masked_tokens=300, tokens_seen=2000,
                       accuracy=0.1, lr=1e-4, sequences_seen=32, tokens_per_s=100.0, samples_per_s=2.0,
                       metrics=values)


@pytest.fixture
def added(monkeypatch):
    monkeypatch.setattr(metrics, "WINDOW_METRICS", metrics.WINDOW_METRICS + (MaskedShare(),))


def test_an_added_metric_is_computed_recorded_shown_monitored_and_defined(added, tmp_path: Path):
    run = SimpleNamespace(engine=SimpleNamespace(get_global_grad_norm=lambda: 2.5),
                          layout=SimpleNamespace(global_batch=8))
    totals = WindowTotals(loss_sum=2250.0, correct=30.0, masked=300.0, tokens=2000.0, steps=4)
    values = metrics.compute_all(metrics.Window(run, totals, seq_len=64, elapsed_s=1.0))
    assert values == {"grad_norm": 2.5, "fill": pytest.approx(2000 / (4 * 8 * 64)), "masked_share": 0.15}

    MetricsLog(tmp_path).append(window_record(values))
    line = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert line["masked_share"] == 0.15 and line["grad_norm"] == 2.5  # flat keys, one per metric
    assert read_metrics(tmp_path)[0].metrics == values

    assert metrics.shown(values) == " grad norm 2.5 fill 97.7% masked share 0.15"

    monitor = Events()
    LiveMetrics(SimpleNamespace(monitor=monitor), global_batch=8).window(window_record(values))
    assert ("Train/Samples/masked_share", 0.15, 32) in monitor.events
    assert ("Train/Samples/fill", pytest.approx(2000 / 2048), 32) in monitor.events

    rows = {q: (v, d) for q, v, d in facts(load_run(tmp_path))}
    assert rows["masked_share (last window)"] == ("0.1500", MaskedShare.definition)


def test_a_metric_without_a_value_is_written_as_null_and_not_shown(tmp_path: Path):
    values = {"grad_norm": None, "fill": 0.5}
    rec = window_record(values)
    assert rec.to_dict()["grad_norm"] is None
    assert metrics.shown(values) == " fill 50.0%"
    assert metrics.series(values) == [("Train/Samples/fill", 0.5)]


def test_a_file_written_before_a_metric_existed_reads_it_as_none(added, tmp_path: Path):
    old = window_record({"grad_norm": 1.0, "fill": 0.9}).to_dict()
    del old["masked_share"]
    rec = TrainWindow.from_dict(old)
    assert rec.metrics == {"grad_norm": 1.0, "fill": 0.9, "masked_share": None}
