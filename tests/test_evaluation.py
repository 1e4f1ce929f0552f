"""Held-out evaluation of saved models: metric definitions by hand, CLI == trainer, checkpoints, refusals."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data_tools.cli import main as data_tools_main
from roberta_ds.reading.data import ShardStream
from roberta_ds.training.observe.records import eval_metrics as metrics_from_sums
from roberta_ds.downstream.saved_model import load_masked_lm
from roberta_ds.reading.masking import EVAL_MASK_SEED, IGNORE_INDEX, Masker, MaskingConfig, sample_rng
from roberta_ds.shard_format import read_manifest

from conftest import pack_corpus
from pretrain_helpers import launcher_main, run_ranks

evaluate_main = launcher_main("evaluate")


def _evaluate(*args: str) -> dict:
    """The evaluate command's main() in this process (as pretrain's, it keeps the process group); returns its JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert evaluate_main(list(args)) == 0
    text = out.getvalue()
    return json.loads(text[text.index("{"):])


def test_metrics_from_sums_hand_case():
    m = metrics_from_sums(loss_sum=6.0, correct=3.0, masked=4.0, sequences=2.0)
    assert m["loss"] == 1.5 and m["perplexity"] == pytest.approx(math.exp(1.5)) and m["accuracy"] == 0.75
    assert (m["masked_tokens"], m["sequences"]) == (4, 2)
    assert set(m["definitions"]) >= {"loss", "perplexity", "accuracy", "masking"}
    empty = metrics_from_sums(0.0, 0.0, 0.0, 0.0)
    assert math.isnan(empty["loss"]) and math.isnan(empty["accuracy"])


def test_cli_matches_hand_computation_and_trainer(tiny_run: Path, shard_dir: Path, tmp_path: Path):
    # Trainer's last eval used micro batch 8 and 32 sequences; the CLI with the same N must reproduce it.
    res = _evaluate("--model", str(tiny_run / "final_model"), "--data_dir", str(shard_dir), "--max_sequences", "32",
                    "--micro_batch", "8", "--out", str(tmp_path / "ev.json"))
    assert json.loads((tmp_path / "ev.json").read_text())["loss"] == res["loss"]
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert res["loss"] == pytest.approx(summary["eval"]["loss"], rel=1e-6)
    assert res["accuracy"] == pytest.approx(summary["eval"]["accuracy"], abs=1e-9)
    assert res["masked_tokens"] == summary["eval"]["masked_tokens"] and res["sequences"] == 32

    # By hand: the same pieces, masks drawn from the documented seed, the full (not sparse) LM head,
    # cross-entropy from log-softmax, argmax accuracy.
    manifest = read_manifest(shard_dir)
    stream = ShardStream(shard_dir, manifest, "validation", 128, EVAL_MASK_SEED, shuffle=False)
    masker = Masker(MaskingConfig(mask_prob=0.15), manifest.tokenizer)
    mlm = load_masked_lm(tiny_run / "final_model").mlm
    nll, correct, masked = 0.0, 0, 0
    with torch.no_grad():
        for _, (key, ids, ws) in zip(range(32), stream.epoch(0)):
            x, y = masker(ids, ws, sample_rng(EVAL_MASK_SEED, 0, key))
            logp = F.log_softmax(mlm(input_ids=torch.from_numpy(x)[None]).logits[0].double(), -1)
            sel = np.flatnonzero(y != IGNORE_INDEX)
            nll -= logp[sel, y[sel]].sum().item()
            correct += int((logp[sel].argmax(-1).numpy() == y[sel]).sum())
            masked += len(sel)
    assert masked == res["masked_tokens"]
    assert res["loss"] == pytest.approx(nll / masked, rel=1e-5)
    assert res["perplexity"] == pytest.approx(math.exp(nll / masked), rel=1e-4)
    assert res["accuracy"] == pytest.approx(correct / masked, abs=1.5 / masked)


def test_checkpoint_dir_gives_the_same_numbers(tiny_run: Path, shard_dir: Path):
    a = _evaluate("--model", str(tiny_run / "checkpoints"), "--data_dir", str(shard_dir), "--max_sequences", "16")
    assert a["model_kind"] == "checkpoint" and a["model"].endswith("global_step12")
    b = _evaluate("--model", str(tiny_run / "final_model"), "--data_dir", str(shard_dir), "--max_sequences", "16")
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["masked_tokens"] == b["masked_tokens"]


def test_refuses_shards_of_another_tokenizer_listing_every_conflict(tiny_run, zh_docs, tmp_path, capsys):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in zh_docs[:150]), "utf-8")
    assert data_tools_main(["build-vocab", "--format", "jsonl", "--input", str(src), "--output", str(tmp_path / "tok"),
                            "--vocab_size", "1500"]) == 0
    other = pack_corpus(zh_docs[:60], tmp_path / "other", tmp_path / "tok", "--max_seq_length", "128",
                        "--val_fraction", "0.2")
    rc = evaluate_main(["--model", str(tiny_run / "final_model"), "--data_dir", str(other)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "cannot be evaluated" in err
    for conflict in ("tokenizer vocab_size", "tokenizer vocab_sha256", "model vocab_size"):
        assert conflict in err


def test_bad_settings_are_named(tmp_path, capsys):
    rc = evaluate_main(["--model", str(tmp_path / "nope"), "--data_dir", str(tmp_path), "--micro_batch", "0",
                        "--split", "test"])
    err = capsys.readouterr().err
    assert rc == 2 and "--micro_batch 0" in err and "--split 'test'" in err and "--model" in err


@pytest.mark.multiproc
def test_two_processes_match_one(tiny_run: Path, shard_dir: Path):
    proc = run_ranks(2, ["--model", str(tiny_run / "final_model"), "--data_dir", str(shard_dir), "--max_sequences", "32",
                         "--micro_batch", "4"], command="evaluate", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout[proc.stdout.index("{\n"):]
    two = json.loads(out[: out.index("\n}") + 2])
    assert two["world_size"] == 2
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert two["loss"] == pytest.approx(summary["eval"]["loss"], rel=1e-6)
    assert two["masked_tokens"] == summary["eval"]["masked_tokens"]


def test_collapse_stats_tell_a_collapsed_encoder_from_a_working_one():
    import torch

    from roberta_ds.training.observe.evaluation import COLLAPSE_TOKEN_COSINE, collapse_stats

    g = torch.Generator().manual_seed(0)
    real = torch.ones(8, 16, dtype=torch.bool)
    real[3, 10:] = False  # padding is left out
    healthy = collapse_stats(torch.randn(8, 16, 32, generator=g), real)
    assert abs(healthy["token_cosine"]) < 0.1 and not healthy["collapsed"] and healthy["cls_relative_spread"] > 0.5
    # Every token the same vector (plus noise at 1e-4 of its scale), as in issue 7's exported demo model.
    same = torch.randn(32, generator=g) + 1e-4 * torch.randn(8, 16, 32, generator=g)
    collapsed = collapse_stats(same, real)
    assert collapsed["token_cosine"] > COLLAPSE_TOKEN_COSINE and collapsed["collapsed"]
    assert collapsed["cls_relative_spread"] < 1e-3 and collapsed["sequences"] == 8
