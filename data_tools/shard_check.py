"""`data_tools inspect DIR` (summary + one decoded sample) and `data_tools verify DIR`."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rich.console import Console

from roberta_ds.shard_format import (
    IDS_MEMBER,
    TOKENIZER_DIRNAME,
    decode_sample,
    read_manifest,
    sha256_file,
)


def raw_samples(path: Path) -> Iterator[dict]:
    """The tar's raw (undecoded) WebDataset samples in order: consecutive members grouped by key,
    the name up to the first dot of its last path component, as webdataset groups them."""
    sample: dict = {}
    with tarfile.open(path, "r") as tf:
        for m in tf:
            if not m.isfile():
                continue
            folder, _, base = m.name.rpartition("/")
            stem, _, ext = base.partition(".")
            key = f"{folder}/{stem}" if folder else stem
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            sample["__key__"] = key
            sample[ext] = tf.extractfile(m).read()
    if sample:
        yield sample


def _read_tar(path: Path, max_seq_length: int, pad_id: int) -> dict:
    """Count samples, sequences, non-pad tokens and padding, decoding every sample as training does."""
    counts = {"samples": 0, "sequences": 0, "tokens": 0, "padding_tokens": 0}
    for sample in raw_samples(path):
        if IDS_MEMBER not in sample:
            raise ValueError(f"sample {sample['__key__']}: no {IDS_MEMBER} (members {sorted(sample)[1:]})")
        ids, ws = decode_sample(sample, max_seq_length)
        if ids.ndim != 2 or ids.shape[1] != max_seq_length:
            raise ValueError(f"{sample['__key__']}.{IDS_MEMBER}: shape {ids.shape}, expected [n, {max_seq_length}]")
        if ws is not None and ws.shape != ids.shape:
            raise ValueError(f"{sample['__key__']}: word starts shape {ws.shape} != ids shape {ids.shape}")
        pad = int(np.count_nonzero(ids == pad_id))
        counts["samples"] += 1
        counts["sequences"] += ids.shape[0]
        counts["padding_tokens"] += pad
        counts["tokens"] += ids.size - pad
    return counts


def verify(root: Path, console: Console) -> list[str]:
    """Every mismatch as a line naming the shard; empty when the dataset is intact."""
    m = read_manifest(root)
    problems = []
    for split, info in m.splits.items():
        for sh in info.shards:
            path = root / sh.name
            if not path.exists():
                problems.append(f"{sh.name}: missing")
                continue
            digest = sha256_file(path)
            if digest != sh.sha256:
                problems.append(f"{sh.name}: sha256 {digest[:16]}… != manifest {sh.sha256[:16]}…")
            if path.stat().st_size != sh.bytes:
                problems.append(f"{sh.name}: {path.stat().st_size} bytes != manifest {sh.bytes}")
            try:
                got = _read_tar(path, m.max_seq_length, m.tokenizer.pad_id)
            except (tarfile.TarError, ValueError, OSError, EOFError) as e:
                problems.append(f"{sh.name}: unreadable ({type(e).__name__}: {e})")
                continue
            for k, v in got.items():
                if v != getattr(sh, k):
                    problems.append(f"{sh.name}: {k} {v} in the tar != manifest {getattr(sh, k)}")
        if info.document_hashes:
            hp = root / info.document_hashes
            n = len(np.load(hp)) if hp.exists() else None
            if n != info.documents:
                problems.append(f"{info.document_hashes}: {n} hashes != manifest documents {info.documents}")
        console.print(f"{split}: checked {len(info.shards)} shards")
    return problems


def inspect(root: Path, console: Console, chars: int = 300) -> None:
    from rich.table import Table

    from data_tools.pack_job import print_summary
    from roberta_ds.tokenizer import load_tokenizer

    m = read_manifest(root)
    t = Table(title=f"{root}")
    t.add_column("field", style="bold")
    t.add_column("value")
    t.add_row("format version", str(m.format_version))
    t.add_row("tokenizer", f"{m.tokenizer.name} ({m.tokenizer.vocab_size:,} ids, sha256 {m.tokenizer.vocab_sha256[:12]}…)")
    t.add_row("max_seq_length / sequences per sample / dtype / wwm", f"{m.max_seq_length} / {m.sequences_per_sample} / {m.dtype} / {m.wwm}")
    t.add_row("source", f"{m.source.get('format')} {m.source.get('input')}")
    console.print(t)
    print_summary(console, m)
    split = next((s for s, i in m.splits.items() if i.shards), None)
    if split is None:
        return
    tok = load_tokenizer(root / TOKENIZER_DIRNAME)
    shard = m.splits[split].shards[0].name
    samples = raw_samples(root / shard)
    first = next(samples)
    samples.close()
    ids, ws = decode_sample(first, m.max_seq_length)
    row = ids[0].tolist()
    console.print(f"[bold]{shard}, sample 0 ({first['__key__']}), sequence 0[/] (first {chars} characters):")
    console.print(tok.decode(row)[:chars], markup=False)
    if ws is not None:
        toks = tok.convert_ids_to_tokens(row[:80])
        words = "".join((" " if f else "") + t.removeprefix("##") for t, f in zip(toks, ws[0][:80]))
        console.print("[bold]jieba word starts (first 80 tokens, space = word start):[/]")
        console.print(words.strip(), markup=False)
