"""Read volume per rank: what one rank of R reads and decodes in an epoch, against what it trains on.

    python bench/read_volume.py --shards SHARDS [--global_batch 256] [--world_sizes 1,2,8,64]

A data-only simulation (no model): rank r of R builds its training batches for one epoch exactly as the trainer
does (roberta_ds.reading.data: canonical order, this rank's positions, masking, collation) in this one process, for
ranks 0 and R-1 of each R. Printed per rank: bytes read from the shards (headers included) against its share
(the bytes of the sequences it trains on), reads, and CPU seconds. The baseline arm, in the same run, is what
every rank did before this loader (and what a plain WebDataset pipeline with a node split by batch does): read
and decode the whole split, measured with webdataset on the same shards; its bytes are the split's size at any R.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def whole_split_pass(shards: Path) -> dict:
    """The old loader's cost on every rank: every shard of the split read and decoded once."""
    import webdataset as wds

    from roberta_ds.shard_format import decode_sample, read_manifest

    m = read_manifest(shards)
    urls = [str(p) for p in m.shard_paths(shards, "train")]
    t0, rows = time.process_time(), 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        ids, _ = decode_sample(sample, m.max_seq_length)
        rows += ids.shape[0]
    return {"rows": rows, "cpu_s": time.process_time() - t0,
            "bytes_read": sum(s.bytes for s in m.splits["train"].shards)}


def rank_read_volume(root: Path, manifest, seq_len: int, layout, seed: int = 0, shuffle_buffer: int | None = None,
                     epoch: int = 0) -> dict:
    """One epoch of one rank's training batches, without a model: what the rank read against what it trains on.

    ``share_bytes`` is the bytes of the sequences behind the rank's pieces (ids, and word starts with --wwm);
    ``bytes_read`` what its reader read, headers included. This benchmark and tests/test_scale_out.py use it.
    """
    from roberta_ds.reading.data import SHUFFLE_BUFFER, PretrainingData, ShardStream
    from roberta_ds.reading.masking import Masker, MaskingConfig

    shuffle_buffer = SHUFFLE_BUFFER if shuffle_buffer is None else shuffle_buffer
    stream = ShardStream(root, manifest, "train", seq_len, seed, True, shuffle_buffer)
    data = PretrainingData(stream, layout, Masker(MaskingConfig(), manifest.tokenizer), seed)
    t0, pieces, tokens = time.process_time(), 0, 0
    for micro_batches in data.steps(epoch):
        for mb in micro_batches:
            pieces += mb["input_ids"].shape[0]
            tokens += mb["n_tokens"]
    cpu = time.process_time() - t0
    r = stream.reader
    # the bytes of the pieces it trains on: ids, and one word-start bit per token with --wwm
    share = pieces * seq_len * r.dtype.itemsize + (pieces * -(-seq_len // 8) if manifest.wwm else 0)
    return {"world_size": layout.world_size, "rank": layout.rank, "steps": data.steps_per_epoch, "pieces": pieces,
            "tokens": tokens, "reads": r.rows_read, "bytes_read": r.bytes_read, "share_bytes": share,
            "read_ratio": r.bytes_read / max(share, 1), "cpu_s": cpu, "read_cpu_s": stream.read_cpu_s,
            "split_bytes": sum(s.bytes for s in manifest.splits["train"].shards)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=Path, required=True, help="a data_tools pack output directory")
    ap.add_argument("--global_batch", type=int, default=256, help="sequences per step; divisible by every R")
    ap.add_argument("--world_sizes", default="1,2,8,64")
    ap.add_argument("--seq_len", type=int, default=None, help="training length (default: the packed length)")
    a = ap.parse_args()

    from roberta_ds.reading.data import Layout
    from roberta_ds.shard_format import read_manifest

    m = read_manifest(a.shards)
    seq_len = a.seq_len or m.max_seq_length
    base = whole_split_pass(a.shards)
    rows = []
    for R in (int(x) for x in a.world_sizes.split(",")):
        if a.global_batch % R:
            raise SystemExit(f"--global_batch {a.global_batch} does not split over {R} ranks")
        for r in sorted({0, R - 1}):
            rows.append(rank_read_volume(a.shards, m, seq_len, Layout(a.global_batch // R, 1, R, r)))
    mb = 2**20
    print(f"{len(m.splits['train'].shards)} train shards, {base['bytes_read'] / mb:.1f} MiB, "
          f"{m.splits['train'].sequences:,} sequences of {m.max_seq_length}; training length {seq_len}; global batch "
          f"{a.global_batch}; one epoch per rank")
    print(f"{'R':>4} {'rank':>5} {'steps':>6} {'share MiB':>10} {'read MiB':>9} {'read/share':>10} {'reads':>8} "
          f"{'CPU s':>7} {'of it reading':>13} {'before: read MiB':>17} {'before: CPU s':>14}")
    for r in rows:
        print(f"{r['world_size']:>4} {r['rank']:>5} {r['steps']:>6} {r['share_bytes'] / mb:>10.2f} "
              f"{r['bytes_read'] / mb:>9.2f} {r['read_ratio']:>10.3f} {r['reads']:>8,} {r['cpu_s']:>7.2f} {r['read_cpu_s']:>13.2f} "
              f"{base['bytes_read'] / mb:>17.1f} {base['cpu_s']:>14.2f}")
    print("share: bytes of the sequences the rank trains on; read: bytes its reader read, headers included; "
          "CPU s: process time of building its batches (reading, masking, collation), of it reading: locating and "
          "reading its sequences; before: every rank read "
          "and decoded the whole split (measured once, with webdataset, in this run; its masking and collation came "
          "on top)")
    print(json.dumps({"ranks": rows, "before_per_rank": base}, indent=1))


if __name__ == "__main__":
    main()
