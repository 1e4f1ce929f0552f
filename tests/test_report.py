"""Run reports, comparison of two tiny runs, and sanity warnings (planted leak fires, clean run stays quiet)."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest

from pretrain_helpers import launcher_main, train_tiny

from roberta_ds.training.observe import sanity
from roberta_ds.reports.report import write_report

report_main = launcher_main("report")


def _tr(step, loss, tokens, epoch=0, masked=100, window=10):
    return {"kind": "train", "step": step, "epoch": epoch, "loss": loss, "tokens_seen": tokens,
            "window_masked_tokens": masked, "window_steps": window}


def _ev(step, loss):
    return {"kind": "eval", "step": step, "loss": loss}


HEALTHY = [_ev(0, 9.9), _tr(10, 9.0, 1e6), _tr(20, 7.5, 2e6), _ev(20, 7.3), _tr(30, 7.0, 3e6), _tr(40, 6.8, 4e6),
           _ev(40, 6.9)]


def test_healthy_records_raise_nothing():
    assert sanity.check_records(HEALTHY) == []
    summary = {"final_window_loss": 6.8, "epoch_mean_loss": {"0": (9.0 + 7.5 + 7.0 + 6.8) / 4}}
    assert sanity.check_summary(summary, HEALTHY) == []


def test_nan_and_flat_loss_fire():
    nan = HEALTHY + [_tr(50, float("nan"), 5e6)]
    assert any("loss is nan at step 50" in w for w in sanity.check_records(nan))
    flat = [_tr(s, 10.0 - s * 1e-5, s * 1e5) for s in (10, 20, 30, 40)]
    assert any("training loss is flat" in w for w in sanity.check_records(flat))


def test_original_runs_0_1924_is_flagged():
    # docs/design.md: run 2 reported 0.1924 after 42,875 steps of 16 x 512 tokens; the real recent loss was ~2.87.
    tokens = 42_875 * 16 * 512
    recs = [_tr(40_000, 2.9, tokens * 0.93), _tr(42_875, 0.1924, tokens)]
    w = sanity.check_records(recs)
    assert any("implausibly low" in x and "0.1924" in x for x in w)
    # ... and the summary that divided by the wrong count disagrees with its own windows.
    w = sanity.check_summary({"final_window_loss": 0.1924, "epoch_mean_loss": {}}, [_tr(42_875, 2.87, tokens)])
    assert any("final_window_loss 0.1924" in x and "2.8700" in x for x in w)


def test_heldout_far_below_training_fires():
    recs = [_tr(10, 6.0, 1e6), _ev(10, 3.0), _tr(20, 5.9, 2e6)]
    assert any("held-out loss 3.0000 at step 10 is far below" in w for w in sanity.check_records(recs))


QUALITY = ("the unigram line", "the encoder has collapsed")
"""The final-evaluation checks (sanity.check_final_eval): about what the encoder learned, not the bookkeeping."""


def test_clean_tiny_run_has_no_warnings_and_a_complete_report(tiny_run: Path, tmp_path: Path):
    records = [json.loads(x) for x in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((tiny_run / "summary.json").read_text())
    warnings = sanity.check_run(records, summary, summary["data"]["data_dir"])
    # Twelve steps cannot teach context: the final-evaluation check says so (it must fire on a real run)...
    assert any("the unigram line" in w for w in warnings)
    # ...and no bookkeeping or data check fires.
    assert [w for w in warnings if not any(q in w for q in QUALITY)] == []
    assert summary["warnings"] == warnings  # the trainer ran the same checks and found the same
    written = write_report([tiny_run], tmp_path / "rep")
    text = (tmp_path / "rep" / "report.md").read_text()
    section = text.split("## Warnings\n\n", 1)[1].split("\n\n## ", 1)[0]
    assert section.count("- ⚠ ") == len(warnings) and "the unigram line" in section
    for row in ("| unigram line |", "| collapse check |", "nats below unigram |"):
        assert row in text
    for row in ("| steps | 12 |", "| held-out loss |", "| perplexity |", "| accuracy |", "| epoch mean loss |",
                "| tokens/s |", "| ZeRO stage | 0 |"):  # zero2.json on one fp32 rank runs as stage 0
        assert row in text
    assert f"{summary['eval']['loss']:.4f}" in text  # the held-out loss, as the trainer measured it
    facts = json.loads((tmp_path / "rep" / "report.json").read_text())["runs"][0]["facts"]
    assert all(f["definition"] for f in facts)  # every number carries its definition
    if "matplotlib" in sys.modules or _has_matplotlib():
        assert (tmp_path / "rep" / "loss.png") in written and (tmp_path / "rep" / "loss.png").stat().st_size > 1000


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_report_is_complete_in_text_without_matplotlib(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    written = write_report([tiny_run], tmp_path / "rep")
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "loss.png not drawn: matplotlib is not installed" in text and "### Curve data" in text
    assert not (tmp_path / "rep" / "loss.png").exists() and len(written) == 2


@pytest.fixture(scope="module")
def leaky_run(shard_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run on shards whose validation split is the training split (planted leak)."""
    root = tmp_path_factory.mktemp("leak")
    data = root / "data"
    shutil.copytree(shard_dir, data)
    m = json.loads((data / "manifest.json").read_text())
    m["splits"]["validation"] = m["splits"]["train"]
    (data / "manifest.json").write_text(json.dumps(m, ensure_ascii=False, indent=1))
    return train_tiny(data, root / "leaky")


def test_planted_leak_fires_and_comparison_of_two_runs(tiny_run, leaky_run, tmp_path, capsys):
    summary = json.loads((leaky_run / "summary.json").read_text())
    warnings = sanity.check_data(summary["data"]["data_dir"])
    assert any("validation documents (100.0%) also occur in the training split" in w for w in warnings)
    assert any("byte-identical to training shards" in w for w in warnings)
    # The trainer itself warned in its log and recorded it in the summary.
    assert any("also occur in the training split" in w for w in summary["warnings"])

    run = tmp_path / "run"  # a copy: the report refreshes each run's model card
    shutil.copytree(tiny_run, run)
    rc = report_main([str(run), str(leaky_run), "--out", str(tmp_path / "cmp")])
    assert rc == 0
    assert "also occur in the training split" in capsys.readouterr().out
    text = (tmp_path / "cmp" / "report.md").read_text()
    assert "# Run comparison: run vs leaky" in text
    section = text.split("## Side by side")[0].split("## Warnings")[1]
    assert "**leaky**: " in section and "also occur in the training split" in section
    # The clean run's only warnings are the 12-step run's final-evaluation ones (see the test above).
    assert all(any(q in ln for q in QUALITY) for ln in section.splitlines() if "**run**: " in ln)
    header = next(ln for ln in text.splitlines() if ln.startswith("| quantity"))
    assert header == "| quantity | definition | run | leaky |"
    a, b = (json.loads((r / "summary.json").read_text()) for r in (run, leaky_run))
    held = next(ln for ln in text.splitlines() if ln.startswith("| held-out loss"))
    assert f"{a['eval']['loss']:.4f}" in held and f"{b['eval']['loss']:.4f}" in held
    for q in ("dataset", "documents", "sequences", "tokens", "steps", "epochs", "batch", "lr", "precision",
              "ZeRO stage", "initial loss", "final loss", "epoch mean loss", "perplexity", "accuracy", "wall time"):
        assert any(ln.startswith(f"| {q} |") for ln in text.splitlines()), q
    assert math.isfinite(b["eval"]["loss"])


def test_several_runs_need_out(tiny_run, capsys):
    assert report_main([str(tiny_run), str(tiny_run)]) == 2
    assert "--out DIR is required" in capsys.readouterr().err


def test_not_a_run_is_named(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def _ev_full(step, loss, unigram=6.8, collapsed=False):
    return {"kind": "eval", "step": step, "loss": loss, "unigram_nats": unigram,
            "collapse": {"token_cosine": 0.9999999 if collapsed else 0.41, "sequence_cosine": 0.99,
                         "cls_relative_spread": 1e-4 if collapsed else 0.3, "sequences": 64, "collapsed": collapsed}}


def test_final_eval_at_the_unigram_line_or_collapsed_fires():
    # Issue 7's demo: held-out 6.82 with the unigram line at ~6.75-6.8, every token the same vector.
    stuck = HEALTHY + [_ev_full(2000, 6.75, collapsed=True)]
    w = sanity.check_final_eval(stuck)
    assert any("the encoder has collapsed (step 2000)" in x and "0.9999999" in x for x in w)
    assert any("held-out loss 6.7500 at step 2000 is only 0.050 nats below the unigram line 6.8000" in x for x in w)
    above = sanity.check_final_eval([_ev_full(12, 8.1)])
    assert len(above) == 1 and "held-out loss 8.1000 at step 12 is 1.300 nats above the unigram line" in above[0]
    assert sanity.check_run(stuck, None, None) == sanity.check_records(stuck) + w
    # Passing through the plateau early is normal: only the run's last evaluation counts.
    escaped = [_ev_full(0, 9.9), _ev_full(500, 6.7, collapsed=True), _ev_full(2000, 5.4)]
    assert sanity.check_final_eval(escaped) == []
    # Without a recorded unigram line (shards packed before it existed) only the collapse check runs.
    old = [{**_ev_full(2000, 6.75, collapsed=True), "unigram_nats": None}]
    assert [x for x in sanity.check_final_eval(old) if "unigram" in x] == []


@pytest.mark.slow
def test_a_collapsed_run_is_named_in_the_log_the_summary_and_the_report(shard_dir, tmp_path, capsys):
    """Issue 7's collapse, reproduced: a tiny model at a very high learning rate maps every input to one vector."""
    from pretrain_helpers import eval_records, run_pretrain

    run = tmp_path / "hot"
    assert run_pretrain(shard_dir, run, "zero2", 20, "--ds", "optimizer.params.lr=0.05", "--eval_steps", "20",
                        "--eval_max_sequences", "32") == 0
    first, last = eval_records(run)
    assert not first["collapse"]["collapsed"] and first["collapse"]["token_cosine"] < 0.9  # random init: fine
    assert last["collapse"]["collapsed"], last["collapse"]
    summary = json.loads((run / "summary.json").read_text())
    assert any("the encoder has collapsed (step 20)" in w for w in summary["warnings"])
    assert "the encoder has collapsed (step 20)" in capsys.readouterr().out.replace("\n", " ")
    write_report([run], tmp_path / "rep")
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| collapse check | COLLAPSED: token cosine" in text and "- ⚠ the encoder has collapsed" in text


def test_a_rising_loss_is_called_diverging_not_flat():
    rising = [_tr(s, 9.9 + s * 100.0, s * 1e5) for s in (10, 20, 30, 40)]
    w = sanity.check_records(rising)
    assert any("training loss rose: 1009.9000 at step 10 -> 4009.9000 at step 40" in x and "diverging" in x for x in w)
    assert not any("flat" in x for x in w)
