"""Run records are an on-disk format: what this version writes reads back the same, and files written before
records.py existed (version 1: no "version" key, per-epoch sums as lists) still read."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from roberta_ds.training import run_files
from roberta_ds.training.observe import records
from roberta_ds.training.observe.records import Evaluation, MetricsLog, TrainWindow
from roberta_ds.training.observe.totals import EpochTotals, WindowTotals
from roberta_ds.training.observe.state import TrainState

V1_TRAIN = {"kind": "train", "step": 4, "epoch": 0, "loss": 8.1,
            "loss_definition": "mean CE per masked token over the last 4 step(s), all ranks", "window_steps": 4,
            "window_masked_tokens": 1200, "accuracy": 0.01, "lr": 1e-3, "tokens_seen": 8192, "sequences_seen": 64,
            "tokens_per_s": 900.0, "samples_per_s": 7.0, "skipped_steps": 0}
V1_EVAL = {"kind": "eval", "step": 4, "loss": 7.9, "perplexity": math.exp(7.9), "accuracy": 0.02, "masked_tokens": 568,
           "sequences": 32, "definitions": {}, "tokens_seen": 8192, "eval_time_s": 0.5, "elapsed_s": 3.0,
           "unigram_nats": 6.7, "below_unigram": -1.2}


def test_version_1_metrics_read_and_round_trip(tmp_path: Path):
    (tmp_path / run_files.METRICS_NAME).write_text(json.dumps(V1_TRAIN) + "\n" + json.dumps(V1_EVAL) + "\n")
    train, ev = records.read_metrics(tmp_path)
    assert isinstance(train, TrainWindow) and train.loss == 8.1 and train.window_masked_tokens == 1200
    assert isinstance(ev, Evaluation) and ev.below_unigram == -1.2
    again = {k: v for k, v in train.to_dict().items() if k != "version"}
    assert again == {**V1_TRAIN, "grad_norm": None, "fill": None}  # the window metrics added since (3 and 5)
    assert train.to_dict()["version"] == records.VERSION


def test_a_record_missing_a_required_field_is_named(tmp_path: Path):
    (tmp_path / run_files.METRICS_NAME).write_text(json.dumps({"kind": "train", "step": 3, "loss": 1.0}) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:1: a 'train' record lacks \['epoch', 'window_steps'"):
        records.read_metrics(tmp_path)


def test_resume_truncates_the_log_to_the_checkpoint(tmp_path: Path):
    log = MetricsLog(tmp_path)
    for step in (1, 4, 8):
        log.append(TrainWindow.from_dict({**V1_TRAIN, "step": step}))
    log.truncate_after(4)
    assert [r.step for r in records.read_metrics(tmp_path)] == [1, 4] == [r.step for r in log.records]


def test_epoch_means_are_masked_token_weighted():
    ws = [TrainWindow.from_dict({**V1_TRAIN, "loss": 2.0, "window_masked_tokens": 100}),
          TrainWindow.from_dict({**V1_TRAIN, "loss": 4.0, "window_masked_tokens": 300, "epoch": 0}),
          TrainWindow.from_dict({**V1_TRAIN, "loss": 1.0, "window_masked_tokens": 50, "epoch": 1})]
    assert records.epoch_means(ws) == {"0": pytest.approx(3.5), "1": 1.0}


def test_train_state_round_trips_and_reads_version_1():
    st = TrainState(step=8, sequences_seen=128, tokens_seen=16000, initial_loss=9.7)
    st.add_window(WindowTotals(loss_sum=800.0, correct=10.0, masked=100.0, tokens=2000.0, steps=4), epoch=0)
    st.evals.append(Evaluation.from_dict(V1_EVAL))
    d = st.to_dict(steps_per_epoch=5, global_batch=16, seq_len=128)
    assert d["data_cursor"] == {"epoch": 1, "step_in_epoch": 3, "global_batch": 16, "seq_len": 128}
    assert TrainState.from_dict(json.loads(json.dumps(d))) == st
    v1 = {"step": 8, "sequences_seen": 128, "tokens_seen": 18000, "skipped_steps": 0, "initial_loss": 9.7,
          "epoch_sums": {"0": [800.0, 100.0, 2000.0, 4]}, "train_time_s": 1.5, "last_window": [8.0, 4],
          "evals": [V1_EVAL], "clock": {"elapsed_s": 2.0, "projected_total_steps": None}}
    old = TrainState.from_dict(v1)
    assert old.epochs == {0: EpochTotals(800.0, 100.0, 2000.0, 4)} and old.epoch_mean_loss() == {"0": 8.0}
    assert (old.last_window_loss, old.last_window_steps) == (8.0, 4) and old.evals[0].loss == 7.9
