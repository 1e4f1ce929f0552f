"""Scale out: a run saved on N ranks resumes on M through DeepSpeed's universal checkpoint, and its losses
continue those of an uninterrupted run with the same global batch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pretrain_helpers import ROOT, pretrain_args, run_pretrain, run_ranks, train_records

EXACT = ("--dropout", "0", "--save_steps", "2", "--save_total_limit", "0")
"""No dropout: the RNG streams of different world sizes differ; every step the same otherwise."""


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in train_records(run)}


@pytest.mark.multiproc
@pytest.mark.parametrize("config", ["zero2", "zero3"])
def test_resume_on_another_world_size_continues_the_uninterrupted_losses(shard_dir: Path, tmp_path: Path,
                                                                         config: str):
    ref, up, down = tmp_path / "ref", tmp_path / "up", tmp_path / "down"
    # the reference: 1 rank, micro batch 16, checkpoints every 2 steps
    assert run_pretrain(shard_dir, ref, config, 8, *EXACT) == 0
    # 1 -> 2: the reference's step-4 checkpoint on 2 ranks of micro batch 8 (the same global batch), to step 6
    proc = run_ranks(2, pretrain_args(shard_dir, up, config, 8, *EXACT, "--ds", "train_micro_batch_size_per_gpu=8",
                                      "--resume_from_checkpoint", str(ref / "checkpoints" / "global_step4"),
                                      "--stop_at_step", "6"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # zero2 on one fp32 rank runs as stage 0 (ds_config.one_rank_stage): its checkpoint has no ZeRO partitions and
    # loads into the 2 ranks' ZeRO-2 partitions directly; zero3's goes through DeepSpeed's universal checkpoint
    how = "Adam's state into this run's ZeRO partitions" if config == "zero2" else "universal checkpoint"
    assert how in proc.stdout and "DP world size" not in proc.stdout + proc.stderr
    # 2 -> 1: the 2-rank run's step-6 checkpoint on 1 rank, to the end
    assert run_pretrain(shard_dir, down, config, 8, *EXACT,
                        "--resume_from_checkpoint", str(up / "checkpoints" / "global_step6")) == 0
    want = losses(ref)
    assert sorted(losses(up)) == [5, 6] and sorted(losses(down)) == [7, 8]
    for step, loss in {**losses(up), **losses(down)}.items():
        assert loss == pytest.approx(want[step], abs=1e-5), step
    # converted once (kept for the next resume) where the checkpoint is partitioned
    assert (ref / "checkpoints" / "global_step4" / "universal").is_dir() == (config == "zero3")
    assert (up / "checkpoints" / "global_step6" / "universal").is_dir()  # 2 ranks of ZeRO-2 -> 1: universal
    stages = [json.loads((run / "effective_config.json").read_text())["deepspeed"]["zero_optimization"]["stage"]
              for run in (ref, up, down)]
    assert stages == ([0, 2, 2] if config == "zero2" else [3, 3, 3])  # down resumes a partitioned checkpoint
    assert (down / "final_model" / "config.json").exists()


def test_a_world_size_change_that_changes_the_global_batch_says_which_batch_to_use(shard_dir: Path, tmp_path: Path,
                                                                                   capsys):
    run = tmp_path / "run"
    assert run_pretrain(shard_dir, run, "zero2", 8, "--stop_at_step", "2", "--save_steps", "2") == 0
    assert run_pretrain(shard_dir, run, "zero2", 8, "--ds", "train_micro_batch_size_per_gpu=8",
                        "--resume_from_checkpoint", "auto") == 2
    err = capsys.readouterr().err
    assert "global batch: checkpoint 16 vs now 8" in err
    assert "use --ds train_micro_batch_size_per_gpu=8 --ds gradient_accumulation_steps=2" in err


def test_estimate_memory_prints_deepspeeds_estimates_for_every_zero_setup_and_exits(shard_dir: Path, tmp_path: Path,
                                                                                    capsys):
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
    from pretrain_helpers import pretrain_main

    from roberta_ds.training.model import ModelConfig, roberta_config
    from roberta_ds.shard_format import read_manifest
    from transformers import RobertaForMaskedLM

    out = tmp_path / "run"
    assert pretrain_main(pretrain_args(shard_dir, out, "zero2", 8, "--estimate_memory", "8x2")) == 0
    text = capsys.readouterr().out
    assert not out.exists()  # nothing trained
    rows = {ln[:37].strip(): ln[37:].split() for ln in text.splitlines() if ln.startswith("ZeRO-")}
    assert list(rows) == ["ZeRO-1", "ZeRO-2", "ZeRO-2 + offload optimizer", "ZeRO-3", "ZeRO-3 + offload optimizer",
                          "ZeRO-3 + offload optimizer and params"]
    manifest = read_manifest(shard_dir)
    model = RobertaForMaskedLM(roberta_config(ModelConfig(model_size="tiny"), manifest.tokenizer,
                                              manifest.max_seq_length))
    params = sum(p.numel() for p in model.parameters())  # the decoder weight is tied: counted once
    _, gpu = estimate_zero2_model_states_mem_needs(params, 8, 2, cpu_offload=False)
    assert rows["ZeRO-2"][0] == f"{gpu / 2**30:.2f}"
    assert pretrain_main(pretrain_args(shard_dir, out, "zero2", 8, "--estimate_memory", "8y2")) == 2
    assert "--estimate_memory '8y2': give GPUS_PER_NODE or GPUS_PER_NODExNODES" in capsys.readouterr().err


def test_each_rank_reads_only_its_share_of_the_data(shard_dir: Path):
    from roberta_ds.reading.data import Layout
    from roberta_ds.shard_format import read_manifest

    sys.path.insert(0, str(ROOT / "bench"))
    from read_volume import rank_read_volume  # bench/read_volume.py: the loader's read volume, measured

    m = read_manifest(shard_dir)
    one = rank_read_volume(shard_dir, m, 128, Layout(16, 1, 1, 0), seed=5, shuffle_buffer=500)
    for R in (2, 4):
        ranks = [rank_read_volume(shard_dir, m, 128, Layout(16 // R, 1, R, r), seed=5, shuffle_buffer=500)
                 for r in range(R)]
        assert sum(r["pieces"] for r in ranks) == one["pieces"] and sum(r["tokens"] for r in ranks) == one["tokens"]
        for r in ranks:  # reads its own sequences plus a few headers per shard, never the other ranks' share
            assert r["share_bytes"] <= r["bytes_read"] <= 1.5 * r["share_bytes"], r
            assert r["share_bytes"] == pytest.approx(one["share_bytes"] / R, rel=0.01)
