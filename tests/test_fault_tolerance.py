"""Faults injected for real: SIGKILL after a checkpoint and SIGTERM (preemption, twice), in separate processes
as users meet them, where the resumed runs must end with the uninterrupted run's exact weights; and a loss
that blows up to NaN, which must stop the run before the bad update."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest
import torch
from pretrain_helpers import ROOT, pretrain_args, run_pretrain, start_command, train_records
from safetensors.torch import load_file

from roberta_ds.training.engine.checkpoint import STATE_NAME, export_checkpoint, list_checkpoints
from roberta_ds.reading.data import Layout, PretrainingData, ShardStream
from roberta_ds.reading.masking import Masker, MaskingConfig
from roberta_ds.shard_format import read_manifest
from roberta_ds.training.loop.preemption import EXIT_REQUEUE

STEPS = 30


def _args(shards: Path, out: Path, *extra: str) -> list[str]:
    return pretrain_args(shards, out, "zero2", STEPS, "--log_steps", "2", *extra)


def _start(args: list[str], log: Path):
    """The pretrain command alone in a process of its own (forked from the tests' fork server, which imported torch,
    transformers and DeepSpeed once), its output in ``log``: signals and kill -9 hit a real, separate process."""
    return start_command("pretrain", args, log)


def _wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 300, poll: float = 0.05) -> None:
    t0 = time.monotonic()
    while not cond():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(poll)


def _run(args: list[str], log: Path) -> int:
    return _start(args, log).wait(timeout=600)


def _flat(text: str) -> str:
    """Log text without whitespace: the console wraps long lines, also inside paths."""
    return "".join(text.split())


def _weights(run: Path) -> dict:
    return load_file(str(run / "final_model" / "model.safetensors"))


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    diff = {k: (wa[k] - wb[k]).abs().max().item() for k in wa if not (wa[k] == wb[k]).all()}
    assert diff == {}  # bitwise: no tensor differs in any element


@pytest.fixture(scope="module")
def straight(shard_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    assert _run(_args(shard_dir, out, "--save_steps", "20"), out.parent / "log") == 0
    return out


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_resumes_bitwise(shard_dir: Path, straight: Path, tmp_path: Path):
    run = tmp_path / "killed"
    proc = _start(_args(shard_dir, run, "--save_steps", "20"), tmp_path / "log1")
    _wait_for(lambda: (run / "checkpoints" / "global_step20" / STATE_NAME).exists(), proc, "the step-20 checkpoint")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (run / "final_model").exists()
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["global_step20"]
    assert _run(_args(shard_dir, run, "--save_steps", "20", "--resume_from_checkpoint", "auto"), tmp_path / "log2") == 0
    assert "resumed from" in (tmp_path / "log2").read_text()
    # The records after the resume point are those of the uninterrupted run, and so are the weights.
    assert [(r["step"], r["loss"]) for r in train_records(run)] == [(r["step"], r["loss"]) for r in train_records(straight)]
    _same_weights(run, straight)


@pytest.mark.slow
def test_sigterm_saves_exits_for_requeue_and_resumes_bitwise(shard_dir: Path, straight: Path, tmp_path: Path):
    run = tmp_path / "preempted"
    log = tmp_path / "log1"
    proc = _start(_args(shard_dir, run, "--save_steps", "20"), log)  # the run saves at 20 and 30 by itself
    _wait_for(lambda: (run / "metrics.jsonl").exists() and len(train_records(run)) > 6, proc, "step 12")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # a second signal while the checkpoint is written must not cut it short
    assert proc.wait(timeout=120) == EXIT_REQUEUE
    text = log.read_text()
    assert _flat("received SIGTERM: finishing this step, saving a checkpoint, then exiting with status 75") in _flat(text)
    assert _flat("received SIGTERM again: already stopping") in _flat(text)
    saved = list_checkpoints(run / "checkpoints")[-1]
    step = int(saved.name.removeprefix("global_step"))
    assert 12 <= step < 20, "the preempted run saved where it stopped, not only at its --save_steps"
    assert _flat(f"stopped at step {step} of {STEPS} (SIGTERM), checkpoint saved") in _flat(text)
    assert not (run / "final_model").exists() and not (run / "summary.json").exists()

    assert _run(_args(shard_dir, run, "--save_steps", "20", "--resume_from_checkpoint", "auto"), tmp_path / "log2") == 0
    assert _flat(f"resumed from {saved} at step {step}") in _flat((tmp_path / "log2").read_text())
    _same_weights(run, straight)


def test_a_nan_loss_stops_before_its_update_naming_the_last_good_checkpoint(shard_dir: Path, tmp_path: Path, capsys):
    # A learning rate of 1e30 (a typo'd exponent) blows the loss up to NaN within a few steps.
    run = tmp_path / "nan"
    rc = run_pretrain(shard_dir, run, "zero2", 40, "--save_steps", "2", "--ds", "optimizer.params.lr=1e30",
                      "--ds", "scheduler.params.warmup_num_steps=30")
    assert rc == 1
    err = " ".join(capsys.readouterr().err.split())
    found = re.search(r"error: the loss of step (\d+) is (nan|inf) \(not finite\): its update was not applied on any "
                      r"rank and training stopped; the last good checkpoint is (\S+) \(resume from it", err)
    assert found, err
    step, good = int(found[1]), Path(found[3])
    assert good == list_checkpoints(run / "checkpoints")[-1] and int(good.name.removeprefix("global_step")) < step
    assert "Try a lower learning rate" in err
    # The failing step is on record; the run did not pretend to finish.
    last = train_records(run)[-1]
    assert last["step"] == step and not math.isfinite(last["loss"])
    assert not (run / "summary.json").exists() and not (run / "final_model").exists()
    # The last good checkpoint loads and exports, with finite weights.
    export_checkpoint(good, tmp_path / "exported")
    exported = load_file(str(tmp_path / "exported" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in exported.values())


def _damage(shards: Path, tmp_path: Path, split: str, how: str) -> Path:
    """A copy of the shards with one member of the split's first shard damaged in place (same size)."""
    bad = tmp_path / f"damaged_{split}_{how}"
    shutil.copytree(shards, bad)
    tar = sorted((bad / split).glob("*.tar"))[0]
    data = bytearray(tar.read_bytes())
    with tarfile.open(tar) as t:
        members = [m for m in t.getmembers() if m.name.endswith(".input_ids.npy")]
    victim = members[len(members) // 2]
    if how == "bytes":  # bad bytes over the token ids of one sample (past the 128-byte .npy header)
        data[victim.offset_data + 128: victim.offset_data + victim.size] = b"\xff" * (victim.size - 128)
    else:  # an interrupted copy: the file ends in the middle of that sample
        del data[victim.offset_data + 1000:]
    tar.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize("split,how", [("train", "bytes"), ("train", "truncated"), ("validation", "bytes")])
def test_a_damaged_shard_stops_the_run_naming_shard_sample_and_fix(shard_dir: Path, tmp_path: Path, capsys,
                                                                   split: str, how: str):
    bad = _damage(shard_dir, tmp_path, split, how)
    rc = run_pretrain(bad, tmp_path / "run", "zero2", 12, "--eval_steps", "6", "--eval_max_sequences", "100000")
    assert rc == 2
    err = " ".join(capsys.readouterr().err.split())
    what = ("token ids outside the vocabulary" if how == "bytes" else "truncated or not written by data_tools pack")
    assert f"error: {bad}/{split}/shard-00000.tar, sample " in err and what in err, err
    assert f"run `python -m data_tools verify {bad}` to check every shard against the manifest" in err


def test_a_full_disk_during_a_save_keeps_the_earlier_checkpoint_and_latest(shard_dir: Path, tmp_path: Path, capsys,
                                                                           monkeypatch):
    # The disk fills while the step-8 checkpoint is written, after DeepSpeed wrote its files and moved its
    # `latest` pointer: the RNG file write fails.
    real_save = torch.save

    def save(obj, f, *a, **k):
        if "global_step8" in str(f) and "rng_rank" in str(f):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    run = tmp_path / "full"
    assert run_pretrain(shard_dir, run, "zero2", 12, "--save_steps", "4") == 1
    err = " ".join(capsys.readouterr().err.split())
    ckpts = run / "checkpoints"
    assert f"error: could not write checkpoint {ckpts / 'global_step8'}: No space left on device (" in err
    assert f"the newest complete checkpoint is still {ckpts / 'global_step4'}" in err
    assert [p.name for p in list_checkpoints(ckpts)] == ["global_step4"] and not (ckpts / "global_step8").exists()
    assert (ckpts / "latest").read_text().strip() == "global_step4"  # DeepSpeed's pointer, for its own tools
    # Space freed: the run resumes from the intact checkpoint and finishes.
    monkeypatch.setattr(torch, "save", real_save)
    assert run_pretrain(shard_dir, run, "zero2", 12, "--save_steps", "4", "--resume_from_checkpoint", "auto") == 0
    assert _flat(f"resumed from {ckpts / 'global_step4'} at step 4") in _flat(capsys.readouterr().out)
    assert (run / "final_model").exists()


@pytest.fixture(scope="module")
def uneven_shards(zh_docs, vocab_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test corpus in shards of very different sizes (full ones and a small remainder)."""
    from conftest import pack_corpus

    out = pack_corpus(zh_docs[:160], tmp_path_factory.mktemp("uneven") / "data", vocab_dir, "--max_seq_length",
                      "128", "--val_fraction", "0.1", "--shard_size_mb", "0.25")
    sizes = [s.sequences for s in read_manifest(out).splits["train"].shards]
    assert len(sizes) >= 2 and max(sizes) > 3 * min(sizes), sizes  # 1,024 and 128 sequences
    return out


def _original_rows(step: list[dict]) -> list[tuple]:
    """The unmasked token ids of a step's sequences (masked positions restored from their labels)."""
    rows = []
    for mb in step:
        ids = mb["input_ids"].clone().view(-1)
        ids[mb["masked_positions"]] = mb["masked_labels"]
        rows += [tuple(r.tolist()) for r in ids.view(mb["input_ids"].shape)]
    return rows


def test_uneven_shards_over_ranks_and_workers_give_each_sequence_once(uneven_shards: Path):
    m = read_manifest(uneven_shards)
    stream = ShardStream(uneven_shards, m, "train", 128, seed=3, shuffle=True, shuffle_buffer=300)
    masker = Masker(MaskingConfig(), m.tokenizer)
    ranks = [PretrainingData(stream, Layout(4, 2, 2, r), masker, mask_seed=3, num_workers=2) for r in range(2)]
    spe = ranks[0].steps_per_epoch
    for epoch in (0, 1):
        seen = Counter(row for d in ranks for step in d.steps(epoch) for row in _original_rows(step))
        canonical = Counter(tuple(p.tolist()) for _, p, _ in islice(stream.epoch(epoch), spe * 16))
        assert sum(seen.values()) == spe * 16 and seen == canonical  # every sequence of the epoch once


@pytest.mark.multiproc
def test_two_processes_with_two_loader_workers_each_finish_epochs_over_uneven_shards(uneven_shards: Path,
                                                                                    tmp_path: Path):
    from pretrain_helpers import run_ranks

    run = tmp_path / "run"
    args = ["--ds_config", str(ROOT / "ds_configs" / "zero2.json"), "--data_dir", str(uneven_shards),
            "--output_dir", str(run), "--model_size", "tiny", "--num_train_epochs", "2", "--num_workers", "2",
            "--log_steps", "5", "--ds", "train_micro_batch_size_per_gpu=32", "--ds", "scheduler.params.warmup_num_steps=2"]
    # micro batch 32 on 2 ranks: 2 epochs of 18 steps over the uneven shards, with 2 loader workers per rank
    proc = run_ranks(2, args, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_completed"] == 2.0


@pytest.mark.multiproc
def test_sigterm_to_one_rank_of_two_stops_both_at_the_same_step(shard_dir: Path, tmp_path: Path):
    import psutil
    from pretrain_helpers import deepspeed_command, run_ranks

    run, steps = tmp_path / "run", 12
    args = pretrain_args(shard_dir, run, "zero2", steps, "--log_steps", "2", "--save_steps", "100",
                         "--ds", "train_micro_batch_size_per_gpu=8")
    cmd, env = deepspeed_command(2, args)
    log = tmp_path / "log"
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait_for(lambda: (run / "metrics.jsonl").exists() and len(train_records(run)) >= 3, proc, "step 4")
    rank1 = [p for p in psutil.Process(proc.pid).children(recursive=True) if "--local_rank=1" in p.cmdline()]
    assert len(rank1) == 1
    rank1[0].send_signal(signal.SIGTERM)  # only rank 1 is told; rank 0 must stop with it
    assert proc.wait(timeout=300) == EXIT_REQUEUE, log.read_text()[-3000:]
    text = _flat(log.read_text())
    saved = list_checkpoints(run / "checkpoints")
    assert len(saved) == 1 and 4 <= int(saved[0].name.removeprefix("global_step")) < steps
    step = int(saved[0].name.removeprefix("global_step"))
    assert sorted(p.name for p in saved[0].glob("rng_rank*.pt")) == ["rng_rank00000.pt", "rng_rank00001.pt"]
    assert step % 5 == 0  # the ranks agree every 5 steps
    assert _flat(f"stopped at step {step} of {steps} (a signal on another rank), checkpoint saved") in text
    resumed = run_ranks(2, [*args, "--resume_from_checkpoint", "auto"])  # the resume is not about the launcher
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert (run / "final_model").exists()


@pytest.mark.slow
def test_sigkill_while_a_checkpoint_is_written_resumes_from_the_previous_complete_one(shard_dir: Path, straight: Path,
                                                                                      tmp_path: Path):
    # Kill the run as soon as the first DeepSpeed file of its step-20 checkpoint is on disk, while the rest of
    # that checkpoint is being written (saves at 10, 20, 30; the state file is written last).
    run = tmp_path / "killed"
    tag = run / "checkpoints" / "global_step20"
    proc = _start(_args(shard_dir, run, "--save_steps", "10"), tmp_path / "log1")
    _wait_for(lambda: tag.exists() and any(tag.glob("*.pt")), proc, "the step-20 checkpoint's first file", poll=0.001)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    complete = (tag / STATE_NAME).exists()
    print(f"the kill left global_step20 {'complete' if complete else 'partial'}: {sorted(p.name for p in tag.iterdir())}")
    assert _run(_args(shard_dir, run, "--save_steps", "10", "--resume_from_checkpoint", "auto"), tmp_path / "log2") == 0
    # A partial checkpoint is never chosen; the newest complete one is (step 10, or 20 if the kill came late).
    chosen = 20 if complete else 10
    assert _flat(f"resumed from {run / 'checkpoints' / f'global_step{chosen}'} at step {chosen}") in _flat(
        (tmp_path / "log2").read_text())
    _same_weights(run, straight)


@pytest.mark.multiproc
def test_a_damaged_shard_stops_both_ranks_of_two_without_a_hang(shard_dir: Path, tmp_path: Path):
    from pretrain_helpers import run_deepspeed

    bad = _damage(shard_dir, tmp_path, "train", "bytes")
    proc = run_deepspeed(2, pretrain_args(bad, tmp_path / "run", "zero2", 12, "--ds", "train_micro_batch_size_per_gpu=8"),
                         timeout=300)  # a hang would end in TimeoutExpired
    assert proc.returncode != 0
    out = _flat(proc.stdout + proc.stderr)
    # A rank reads only its own sequences: the one that met the damage names it, and the launcher ends the job.
    assert out.count(_flat(f"error: {bad}/train/shard-00000.tar, sample ")) >= 1, out[-3000:]


@pytest.mark.multiproc
def test_sigkill_of_one_rank_during_a_checkpoint_write_ends_the_job_and_resume_skips_the_partial(shard_dir: Path,
                                                                                               tmp_path: Path):
    import psutil
    from pretrain_helpers import deepspeed_command, run_ranks

    run, steps = tmp_path / "run", 16
    tag = run / "checkpoints" / "global_step8"
    args = pretrain_args(shard_dir, run, "zero2", steps, "--save_steps", "4", "--ds", "train_micro_batch_size_per_gpu=8")
    cmd, env = deepspeed_command(2, args)
    proc = subprocess.Popen(cmd, env=env, stdout=(tmp_path / "log").open("w"), stderr=subprocess.STDOUT)
    _wait_for(lambda: tag.exists() and any(tag.glob("*.pt")), proc, "the step-8 checkpoint's first file", poll=0.001)
    rank1 = [p for p in psutil.Process(proc.pid).children(recursive=True) if "--local_rank=1" in p.cmdline()]
    rank1[0].kill()
    assert proc.wait(timeout=120) != 0  # the launcher ends the job: no rank waits forever for the dead one
    complete = (tag / STATE_NAME).exists()
    resumed = run_ranks(2, [*args, "--resume_from_checkpoint", "auto"])  # the resume is not about the launcher
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    chosen = 8 if complete else 4
    assert _flat(f"resumed from {run / 'checkpoints' / f'global_step{chosen}'} at step {chosen}") in _flat(resumed.stdout)
    assert (run / "final_model").exists()
