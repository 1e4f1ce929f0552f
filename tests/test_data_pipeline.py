"""The loader: elastic determinism across world sizes, resume cursor, workers, shorter training length."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from roberta_ds.reading.data import Layout, PretrainingData, ShardStream, eval_batches
from roberta_ds.reading.masking import Masker, MaskingConfig
from roberta_ds.shard_format import read_manifest


def _data(shard_dir: Path, micro: int, accum: int, world: int, rank: int, seq_len: int = 128, workers: int = 0):
    m = read_manifest(shard_dir)
    stream = ShardStream(shard_dir, m, "train", seq_len, seed=1, shuffle=True, shuffle_buffer=500)
    masker = Masker(MaskingConfig(), m.tokenizer)
    return PretrainingData(stream, Layout(micro, accum, world, rank), masker, mask_seed=1, num_workers=workers)


def _rows(step: list[dict]) -> list[tuple]:
    return [tuple(r.tolist()) + tuple(mb["masked_positions"].tolist()) for mb in step for r in mb["input_ids"]]


def test_global_batches_do_not_depend_on_world_size(shard_dir: Path):
    one = _data(shard_dir, 16, 1, 1, 0)
    two = [_data(shard_dir, 8, 1, 2, r) for r in range(2)]
    accum = _data(shard_dir, 4, 2, 2, 1)  # micro 4 x accumulation 2 x 2 ranks = 16 too
    assert one.steps_per_epoch == two[0].steps_per_epoch == two[1].steps_per_epoch == accum.steps_per_epoch
    it1, it2a, it2b = one.steps(0), two[0].steps(0), two[1].steps(0)
    for _ in range(5):
        a = next(it1)[0]
        b0, b1 = next(it2a)[0], next(it2b)[0]
        joined = torch.cat([b0["input_ids"], b1["input_ids"]])
        assert torch.equal(a["input_ids"], joined), "global batch differs between 1x16 and 2x8"
        assert a["n_masked"] == b0["n_masked"] + b1["n_masked"]
    assert sum(1 for _ in two[0].steps(0)) == sum(1 for _ in two[1].steps(0)) == one.steps_per_epoch


def test_epochs_reshuffle_and_resume_cursor_replays_the_tail(shard_dir: Path):
    d = _data(shard_dir, 16, 1, 1, 0)
    full = [s[0]["input_ids"] for s in d.steps(0)]
    tail = [s[0]["input_ids"] for s in d.steps(0, start_step=7)]
    assert len(tail) == len(full) - 7
    assert all(torch.equal(a, b) for a, b in zip(full[7:], tail))
    other_epoch = next(iter(d.steps(1)))[0]["input_ids"]
    assert not torch.equal(full[0], other_epoch), "epoch 1 must be ordered differently"


def test_loader_workers_give_the_same_batches(shard_dir: Path):
    a = [s[0]["input_ids"] for s, _ in zip(_data(shard_dir, 16, 1, 1, 0).steps(0), range(9))]
    b = [s[0]["input_ids"] for s, _ in zip(_data(shard_dir, 16, 1, 1, 0, workers=2).steps(0), range(9))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_shorter_training_length_splits_blocks_without_losing_tokens(shard_dir: Path):
    m = read_manifest(shard_dir)
    pad = m.tokenizer.pad_id
    for seq_len in (128, 64, 100):
        stream = ShardStream(shard_dir, m, "validation", seq_len, seed=0, shuffle=False)
        pieces = list(stream.epoch(0))
        assert len(pieces) == len(stream)
        assert all(p[1].shape == (seq_len,) for p in pieces)
        real = sum(int((p[1] != pad).sum()) for p in pieces)
        assert real == m.splits["validation"].tokens, f"tokens lost at --max_seq_length {seq_len}"


def test_too_long_training_length_is_refused(shard_dir: Path):
    with pytest.raises(ValueError, match="exceeds the shards' packed length 128"):
        ShardStream(shard_dir, read_manifest(shard_dir), "train", 256, seed=0, shuffle=False)


def test_eval_batches_cover_the_split_once_with_equal_counts_per_rank(shard_dir: Path):
    m = read_manifest(shard_dir)
    stream = ShardStream(shard_dir, m, "validation", 128, seed=0, shuffle=False)
    masker = Masker(MaskingConfig(), m.tokenizer)
    per_rank = [list(eval_batches(stream, Layout(16, 1, 3, r), masker, 5)) for r in range(3)]
    assert len({len(b) for b in per_rank}) == 1, "ranks must run the same number of eval forwards"
    seen = sum(b["input_ids"].shape[0] for batches in per_rank for b in batches if b is not None)
    assert seen == len(stream)
    again = list(eval_batches(stream, Layout(16, 1, 3, 0), masker, 5))
    assert all(torch.equal(x["masked_positions"], y["masked_positions"]) for x, y in zip(per_rank[0], again) if x)


def test_eval_subset_does_not_depend_on_micro_batch_or_world_size(shard_dir: Path):
    m = read_manifest(shard_dir)
    stream = ShardStream(shard_dir, m, "validation", 128, seed=0, shuffle=False)
    masker = Masker(MaskingConfig(), m.tokenizer)
    for micro, world in ((16, 1), (7, 3), (5, 2)):
        rows = [b["input_ids"] for r in range(world)
                for b in eval_batches(stream, Layout(micro, 1, world, r), masker, 5, max_sequences=50) if b is not None]
        assert sum(x.shape[0] for x in rows) == 50, (micro, world)
