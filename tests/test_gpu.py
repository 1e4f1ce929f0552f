"""Checks that need a CUDA device: run on GPU machines (pytest -m gpu); skipped on CPU-only ones.

The same features are exercised on CPU by the other tests; these add what only a GPU shows:
precision "auto" picking bf16/fp16, NCCL, and fp16 loss scaling on real half-precision kernels.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from pretrain_helpers import pretrain_args, run_deepspeed, run_pretrain, train_records

from roberta_ds.training.engine.ds_config import hardware_precision

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_auto_precision_trains_on_gpu(shard_dir: Path, tmp_path: Path):
    assert run_pretrain(shard_dir, tmp_path / "run", "zero2", 12) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["precision"] == hardware_precision()
    losses = [r["loss"] for r in train_records(tmp_path / "run")]
    assert sum(losses[-3:]) / 3 < losses[0] - 0.3


def test_fp16_loss_scaling_on_gpu(shard_dir: Path, tmp_path: Path):
    assert run_pretrain(shard_dir, tmp_path / "run", "zero3", 12, "--ds", "fp16.enabled=true",
                        "--ds", "bf16.enabled=false") == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["precision"] == "fp16" and summary["skipped_steps"] < 12


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_nccl_match_one(shard_dir: Path, tmp_path: Path):
    common = ("--dropout", "0", "--ds", "bf16.enabled=false", "--ds", "fp16.enabled=false")
    assert run_pretrain(shard_dir, tmp_path / "one", "zero2", 8, *common) == 0
    proc = run_deepspeed(2, pretrain_args(shard_dir, tmp_path / "two", "zero2", 8, *common,
                                          "--ds", "train_micro_batch_size_per_gpu=8"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for x, y in zip(train_records(tmp_path / "one"), train_records(tmp_path / "two")):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-4)  # TF32/cuBLAS reductions differ slightly


def test_fp16_that_overflows_every_step_stops_with_a_message(shard_dir: Path, tmp_path: Path, capsys):
    # A minimum loss scale of 2^30 keeps every scaled fp16 gradient overflowing: every update is skipped.
    rc = run_pretrain(shard_dir, tmp_path / "run", "zero2", 12, "--ds", "fp16.enabled=true", "--ds", "bf16.enabled=false",
                      "--ds", "fp16.initial_scale_power=32", "--ds", "fp16.min_loss_scale=1073741824",
                      "--max_consecutive_skipped", "5")
    assert rc == 1
    err = " ".join(capsys.readouterr().err.split())
    found = re.search(r"fp16 gradients overflowed at each of the last (\d+) steps, up to step (\d+)", err)
    assert found and int(found[1]) == int(found[2]) <= 5 and "training on nothing" in err, err
    assert train_records(tmp_path / "run")[-1]["skipped_steps"] == int(found[1])
