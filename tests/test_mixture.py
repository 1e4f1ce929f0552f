"""Mixtures, phases and continued pretraining through the real engine: the shipped CPU recipe on two sources packed
from the test corpus (recipes/cpu_tiny/pretrain.args: 12 steps, 64 then 128 tokens)."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import pack_corpus, shared_artefact
from pretrain_helpers import ROOT, pretrain_main, run_ranks, start_command, train_records
from safetensors.torch import load_file

from roberta_ds.reading.data import Layout
from roberta_ds.reading.masking import Masker, MaskingConfig
from roberta_ds.reading.mixture import MIX_BLOCK, MixedData, Source, block_counts, load_mixture, parse_phases
from roberta_ds.shard_format import read_manifest
from roberta_ds.training.engine.checkpoint import STATE_NAME

RECIPE = f"@{ROOT / 'recipes' / 'cpu_tiny' / 'pretrain.args'}"
EXACT = ("--dropout", "0", "--save_total_limit", "0")
"""No dropout (the RNG streams of different world sizes differ); every checkpoint kept."""


@pytest.fixture(scope="session")
def mix_dir(zh_docs: list[str], vocab_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sources packed from the test corpus with one vocab (250 and 150 documents) and mix.json (70/30)."""

    def build(root: Path) -> None:
        for name, docs in (("a", zh_docs[:250]), ("b", zh_docs[250:])):
            pack_corpus(docs, root / name, vocab_dir, "--max_seq_length", "128", "--val_fraction", "0.1", "--wwm")
        _write_mix(root / "mix.json", [{"name": "a", "dir": "a", "weight": 0.7}, {"name": "b", "dir": "b", "weight": 0.3}])

    return shared_artefact(tmp_path_factory, "mixture", build)


def _write_mix(path: Path, sources: list[dict]) -> Path:
    path.write_text(json.dumps({"sources": sources}), encoding="utf-8")
    return path


def _args(mix: Path, out: Path, *extra: str) -> list[str]:
    return [RECIPE, "--mixture", str(mix), "--output_dir", str(out), *EXACT, *extra]


@pytest.fixture(scope="module")
def reference(mix_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe's uninterrupted 12-step run (checkpoints every 2 steps)."""
    out = tmp_path_factory.mktemp("mix_ref") / "run"
    assert pretrain_main(_args(mix_dir / "mix.json", out, "--ds", "csv_monitor.enabled=true")) == 0
    return out


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in train_records(run)]


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "final_model" / "model.safetensors")), load_file(str(b / "final_model" / "model.safetensors"))
    assert wa.keys() == wb.keys() and [k for k in wa if not (wa[k] == wb[k]).all()] == []


def _data(mix_dir: Path, weights: tuple[float, float], world: int, rank: int, micro: int, phases: str = "64:0.5,128:0.5",
          **b) -> MixedData:
    sources = [Source("a", str(mix_dir / "a"), weights[0]), Source("b", str(mix_dir / "b"), weights[1], **b)]
    manifests = [read_manifest(s.dir) for s in sources]
    layout = Layout(micro_batch=micro, grad_accum=1, world_size=world, rank=rank)
    data = MixedData(sources, manifests, parse_phases(phases), layout,
                     Masker(MaskingConfig(), manifests[0].tokenizer), 42, 1024)
    data.plan_steps(40)
    return data


def test_the_order_is_the_same_at_any_world_size_and_keeps_the_weights(mix_dir: Path):
    one = _data(mix_dir, (0.7, 0.3), 1, 0, 16)
    two = [_data(mix_dir, (0.7, 0.3), 2, r, 8) for r in range(2)]
    counts = np.zeros(2)
    for step in (0, 1, 19, 20, 39):  # both phases, and the boundary
        pieces, src = one.rank_pieces(step)
        halves = [d.rank_pieces(step) for d in two]
        assert [k for k, _, _ in pieces] == [k for p, _ in halves for k, _, _ in p]  # each rank reads its own share
        assert all((a == b).all() for (_, a, _), (_, b, _) in zip(pieces, [x for p, _ in halves for x in p]))
    for step in range(40):
        counts += np.bincount(one.rank_pieces(step)[1], minlength=2)
    assert counts[0] / counts.sum() == pytest.approx(0.7, abs=0.05)
    assert list(block_counts([0.7, 0.3])) == [7000, 3000] and block_counts([1, 1, 1]).sum() == MIX_BLOCK
    # source b, upweighted past its size, repeats: it wraps into its next pass, re-shuffled
    heavy = _data(mix_dir, (0.1, 0.9), 1, 0, 16)
    b_len = heavy.lengths[1][1]  # b's pieces at 128 tokens, phase 2's length
    late = 20 + 2 * b_len // 16  # a step of phase 2 past two passes over b at 90 % of every batch
    passes = {int(k.split("/")[2]) for k, _, _ in heavy.rank_pieces(late)[0] if k.startswith("b/")}
    assert passes and min(passes) >= 1 and heavy.limit() is None


def test_time_share_phases_start_when_the_agreed_clock_passes_their_share(mix_dir: Path):
    data = _data(mix_dir, (0.7, 0.3), 1, 0, 16)
    data.time_shares, data.starts = True, [0, None]  # as build_run leaves a --time_budget run
    assert data.phase_end(0) is None and not data.decide(5, 40.0, 100.0)  # 40 % of the budget: still phase 1
    assert data.decide(10, 50.0, 100.0) and data.starts == [0, 10] and data.phase_at(10) == 1
    assert not data.decide(15, 90.0, 100.0)  # the last phase runs to the end
    offsets = data.offsets()[1]  # phase 2 continues each source at the share of its pass phase 1 read
    read = data.mixture.count_before(0, 10 * 16)
    assert list(offsets) == [-(-r * n2 // n1) for r, n1, n2 in zip(read, data.lengths[0], data.lengths[1])]
    resumed = _data(mix_dir, (0.7, 0.3), 1, 0, 16)
    resumed.time_shares = True
    resumed.set_starts([0, 10])  # what a checkpoint restores
    assert [k for k, _, _ in resumed.rank_pieces(12)[0]] == [k for k, _, _ in data.rank_pieces(12)[0]]


def test_a_stop_source_ends_the_run_where_it_runs_out_and_says_so(mix_dir: Path, tmp_path: Path, capsys):
    data = _data(mix_dir, (0.5, 0.5), 1, 0, 16, "64:1", on_exhausted="stop", max_epochs=0.03)
    step, name = data.limit()
    read = sum(int((data.rank_pieces(s)[1] == 1).sum()) for s in range(step))
    assert name == "b" and read <= 0.03 * data.lengths[0][1] < read + int((data.rank_pieces(step)[1] == 1).sum())
    mix = _write_mix(tmp_path / "mix.json", [{"name": "a", "dir": str(mix_dir / "a"), "weight": 0.5},
                                             {"name": "b", "dir": str(mix_dir / "b"), "weight": 0.5,
                                              "on_exhausted": "stop", "max_epochs": 0.03}])
    out = tmp_path / "run"
    assert pretrain_main(_args(mix, out, "--phases", "64:1", "--phase_warmup_steps", "0")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == step < 12 and f"after step {step}" in summary["stopped_by"]
    assert summary["sources"]["b"]["epochs"] <= 0.03
    assert f"source 'b' runs out after step {step} (on_exhausted: stop)" in " ".join(capsys.readouterr().out.split())


def test_a_mixture_with_phases_trains_and_reports_per_source_shares_and_held_out_losses(mix_dir: Path,
                                                                                        reference: Path):
    summary = json.loads((reference / "summary.json").read_text())
    seqs = {n: s["sequences"] for n, s in summary["sources"].items()}
    assert seqs["a"] / sum(seqs.values()) == pytest.approx(0.7, abs=0.05)
    assert sum(s["tokens"] for s in summary["sources"].values()) == summary["tokens"]
    assert [(p["max_seq_length"], p["steps"], p["sequences"]) for p in summary["phases"]] == [(64, 6, 96), (128, 6, 96)]
    windows = train_records(reference)
    assert {w["seq_len"] for w in windows if w["step"] <= 6} == {64} and {w["seq_len"] for w in windows[4:]} == {128}
    assert all(set(w["sources"]) == {"a", "b"} for w in windows)
    first, last = windows[0]["loss"], sum(w["loss"] for w in windows[-2:]) / 2
    assert last < first - 0.3  # it learns
    evals = [json.loads(x) for x in (reference / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert [e["step"] for e in evals] == [0, 6, 12]
    for e in evals:  # per source at the final length, and the total at every phase's length
        assert set(e["sources"]) == {"a", "b"} and set(e["lengths"]) == {"64", "128"} and e["seq_len"] == 128
        n = sum(s["masked_tokens"] for s in e["sources"].values())
        assert e["loss"] == pytest.approx(sum(s["loss"] * s["masked_tokens"] for s in e["sources"].values()) / n)
        assert e["lengths"]["128"]["loss"] == pytest.approx(e["loss"])
    assert evals[-1]["lengths"]["64"]["loss"] < evals[0]["lengths"]["64"]["loss"]
    card = (reference / "final_model" / "README.md").read_text()
    for name in ("a", "b"):
        sha = json.loads((reference / "effective_config.json").read_text())["data"]["mixture"][name == "b"]
        assert f"mixture source {name}" in card and sha["manifest_sha256"] in card
    csv = reference / "csv_monitor" / reference.name  # the monitors carry the shares and every held-out loss
    names = {p.stem for p in csv.glob("*.csv")}
    assert {"Train_Samples_share_a", "Train_Samples_share_b", "Eval_Samples_loss_a", "Eval_Samples_loss_b",
            "Eval_Samples_loss_at_64", "Eval_Samples_loss_at_128"} <= names, names
    from roberta_ds.reports.report import write_report

    report = write_report([reference])[0].read_text()
    assert "## Sources" in report and "## Phases" in report


def test_resume_exactly_at_the_phase_boundary_is_bitwise(mix_dir: Path, reference: Path, tmp_path: Path):
    run = tmp_path / "run"
    assert pretrain_main(_args(mix_dir / "mix.json", run, "--stop_at_step", "6")) == 0
    assert pretrain_main(_args(mix_dir / "mix.json", run, "--resume_from_checkpoint", "auto")) == 0
    assert _losses(run) == _losses(reference)
    _same_weights(run, reference)


def test_bad_mixtures_and_phases_are_refused_naming_each_problem(mix_dir: Path, other_shards: Path, tmp_path: Path,
                                                                  capsys):
    bad = _write_mix(tmp_path / "bad.json", [
        {"name": "a", "dir": str(mix_dir / "a"), "weight": 0},
        {"name": "a", "dir": str(tmp_path / "nowhere"), "weight": -1, "on_exhaust": "stop"}])
    with pytest.raises(ValueError) as e:
        load_mixture(bad)
    for text in ("weight must be a number > 0, got 0", "weight must be a number > 0, got -1", "nowhere is not a "
                 "shard directory", "'a' is used by two sources", "unknown key(s) ['on_exhaust']"):
        assert text in str(e.value)
    other = _write_mix(tmp_path / "other.json", [{"name": "a", "dir": str(mix_dir / "a"), "weight": 1},
                                                 {"name": "o", "dir": str(other_shards), "weight": 1}])
    out = tmp_path / "run"
    assert pretrain_main(_args(other, out, "--phases", "64:0.5,256:0.5", "--wwm")) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "source 'o': tokenizer vocab_size" in err and "source 'o': tokenizer vocab_sha256" in err
    assert "source 'a' " in err and "packed at 128 tokens, shorter than the run's length(s) [256]" in err
    assert "source 'o': --wwm needs shards packed with --wwm" in err
    for phases, text in (("64:0.5,128:0.4", "the shares sum to 0.9, not 1"), ("64", "is not LENGTH:SHARE")):
        assert pretrain_main(_args(mix_dir / "mix.json", out, "--phases", phases)) == 2
        assert text in capsys.readouterr().err
    assert pretrain_main(_args(mix_dir / "mix.json", out, "--data_dir", str(mix_dir / "a"))) == 2
    assert "--data_dir SHARDS or as --mixture FILE.json (one of them)" in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_a_validation_document_another_source_trains_on_is_warned_about(mix_dir: Path, zh_docs: list[str],
                                                                         vocab_dir: Path, tmp_path: Path):
    from roberta_ds.training.observe.sanity import check_mixture_leaks

    # the same documents split at another fraction: some of c's validation documents are a's training documents
    c = pack_corpus(zh_docs[:100], tmp_path / "c", vocab_dir, "--max_seq_length", "128", "--val_fraction", "0.5")
    found = check_mixture_leaks([(n, p, read_manifest(p)) for n, p in (("a", mix_dir / "a"), ("c", c))])
    assert len(found) == 1 and "validation documents of source 'c' are training documents of source 'a'" in found[0]
    assert check_mixture_leaks([(n, mix_dir / n, read_manifest(mix_dir / n)) for n in ("a", "b")]) == []


def test_resuming_with_another_mixture_or_phases_is_refused_naming_what_changed(mix_dir: Path, tmp_path: Path,
                                                                                 capsys):
    run = tmp_path / "run"
    assert pretrain_main(_args(mix_dir / "mix.json", run, "--stop_at_step", "2")) == 0
    shutil.copytree(mix_dir / "a", tmp_path / "a")
    shutil.copytree(mix_dir / "b", tmp_path / "b")
    other = _write_mix(tmp_path / "mix.json", [{"name": "a", "dir": "a", "weight": 0.5}, {"name": "b", "dir": "b",
                                                                                        "weight": 0.5}])
    assert pretrain_main(_args(other, run, "--resume_from_checkpoint", "auto", "--phases", "64:0.25,128:0.75")) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "mixture: checkpoint a=0.7" in err and "vs now a=0.5" in err
    assert "phases: checkpoint 64:0.5@0,128:0.5@6 vs now 64:0.25@0,128:0.75@3" in err
    assert "--continue_from CHECKPOINT" in err


def test_continue_from_carries_the_optimizer_state_to_new_data_and_a_new_schedule(mix_dir: Path, reference: Path,
                                                                                   tmp_path: Path):
    new = _write_mix(tmp_path / "mix.json", [{"name": "b", "dir": str(mix_dir / "b"), "weight": 1}])
    cont, warm = tmp_path / "continued", tmp_path / "weights_only"
    more = ("--phases", "128:1", "--phase_warmup_steps", "0", "--max_steps", "4", "--save_steps", "4")
    assert pretrain_main(_args(new, cont, *more, "--continue_from", str(reference))) == 0
    assert pretrain_main(_args(new, warm, *more, "--init_from", str(reference / "final_model"))) == 0
    summary = json.loads((cont / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["continued_from"]["step"] == 12
    assert summary["continued_from"]["checkpoint"].endswith("global_step12")
    c, w = train_records(cont), train_records(warm)
    # the same weights give the same first loss; then Adam's carried moments move them otherwise than fresh ones
    assert c[0]["loss"] == pytest.approx(w[0]["loss"], abs=1e-5) and c[0]["loss"] < train_records(reference)[0]["loss"] - 0.3
    assert abs(c[-1]["loss"] - w[-1]["loss"]) > 1e-4  # (the warmup's first step has lr 0: compare after it)
    assert c[0]["lr"] == w[0]["lr"]  # a new schedule: warmup again from step 0
    assert "continued from" in (cont / "final_model" / "README.md").read_text()


@pytest.mark.slow
def test_kill_9_inside_phase_one_then_resume_ends_bitwise_equal(mix_dir: Path, reference: Path, tmp_path: Path):
    run = tmp_path / "run"
    args = _args(mix_dir / "mix.json", run)
    proc = start_command("pretrain", args, tmp_path / "log1")
    ckpt = run / "checkpoints" / "global_step4" / STATE_NAME
    import time

    t0 = time.monotonic()
    while not ckpt.exists():
        assert proc.poll() is None and time.monotonic() - t0 < 300, "no step-4 checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL and not (run / "final_model").exists()
    assert pretrain_main(args + ["--resume_from_checkpoint", "auto"]) == 0
    assert _losses(run) == _losses(reference)
    _same_weights(run, reference)


@pytest.mark.multiproc
@pytest.mark.slow
def test_two_ranks_match_one_and_resume_on_one_rank_inside_phase_two(mix_dir: Path, reference: Path,
                                                                      tmp_path: Path):
    two, down = tmp_path / "two", tmp_path / "down"
    proc = run_ranks(2, _args(mix_dir / "mix.json", two, "--ds", "train_micro_batch_size_per_gpu=8",
                              "--stop_at_step", "8"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    want = dict(_losses(reference))
    got = dict(_losses(two))
    assert sorted(got) == [1, 2, 4, 6, 8]
    for step, loss in got.items():
        assert loss == pytest.approx(want[step], abs=1e-5), step
    assert pretrain_main(_args(mix_dir / "mix.json", down, "--resume_from_checkpoint",
                               str(two / "checkpoints" / "global_step8"))) == 0
    for step, loss in _losses(down):
        assert loss == pytest.approx(want[step], abs=1e-5), step
