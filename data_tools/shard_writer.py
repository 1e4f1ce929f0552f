"""Shard writing: one split's sequences -> DIR/<split>/shard-NNNNN.tar, and nothing else.

A split's completed sequences wait in memory until a shard's worth (``--shard_size_mb``) is there;
the shard is then written sample by sample with ``webdataset.TarWriter`` to ``shard-NNNNN.tar.tmp`` and renamed.
So memory is bounded by one shard per split (the pending sequences, never a copy of them), and a shard on disk is
always complete.

A split's document hashes (documents.npy) grow with the corpus: they live in a growable numpy
uint64 array (8 bytes a document, up to 16 with the doubling slack), not a list of Python ints.

What a writer holds in memory between shards (pending sequences, the packer's carry-over, hashes,
token counts) is saved and restored by data_tools.pack_state, the pack's resume state.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import webdataset as wds

from data_tools.sequence_packer import Packer
from roberta_ds.shard_format import ShardInfo, encode_sample, sha256_file

HASH_DTYPE = np.dtype("<u8")
"""Document hashes in memory and in the resume state's hash files: little-endian uint64."""


class HashArray:
    """Append-only uint64 array with amortised doubling: 8 bytes a hash instead of a list's
    8-byte pointer plus a 36-byte Python int."""

    def __init__(self, values: np.ndarray | None = None):
        values = np.zeros(0, HASH_DTYPE) if values is None else np.asarray(values, HASH_DTYPE)
        self._buf = np.empty(max(1024, 2 * len(values)), HASH_DTYPE)
        self._buf[: len(values)] = values
        self._n = len(values)

    def append(self, h: int) -> None:
        if self._n == len(self._buf):
            grown = np.empty(2 * len(self._buf), HASH_DTYPE)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n] = h
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def view(self) -> np.ndarray:
        """The hashes so far (a view: copy it if you keep it past the next append)."""
        return self._buf[: self._n]


class SplitWriter:
    """Sequences of one split -> DIR/<split>/shard-NNNNN.tar; also owns the split's Packer."""

    def __init__(self, root: Path, split: str, packer: Packer, spp: int, shard_size_mb: float, vocab_size: int):
        self.root, self.split, self.packer, self.spp = root, split, packer, spp
        self.token_counts = np.zeros(vocab_size, dtype=np.int64)
        """Occurrences of every id in the written shards (padding included): the unigram line."""
        L, itemsize = packer.L, packer.dtype.itemsize
        sample_bytes = spp * L * itemsize
        # floor: shards stay under --shard_size_mb unless one sample alone is bigger.
        self.rows_per_shard = spp * max(1, int(shard_size_mb * 2**20) // sample_bytes)
        self.pending: list[np.ndarray] = []
        self.pending_ws: list[np.ndarray] = []
        self.pending_rows = 0
        self.shards: list[ShardInfo] = []
        self.hashes = HashArray()
        (root / split).mkdir(parents=True, exist_ok=True)

    def add_document(self, doc_hash: int, ids: np.ndarray, ws: np.ndarray | None) -> bool:
        """Pack one document; returns True when a shard was completed (time to checkpoint)."""
        self.hashes.append(doc_hash)
        seqs, seq_ws = self.packer.add(ids, ws)
        if len(seqs):
            self.pending.append(seqs)
            if seq_ws is not None:
                self.pending_ws.append(seq_ws)
            self.pending_rows += len(seqs)
        wrote = False
        while self.pending_rows >= self.rows_per_shard:
            self._write_shard(*self._take_rows(self.rows_per_shard), 0)
            wrote = True
        return wrote

    def finish(self) -> None:
        """Pad the remainder block and write everything left as the split's last shard."""
        seq, seq_ws, pad = self.packer.finish()
        if len(seq):
            self.pending.append(seq)
            if seq_ws is not None:
                self.pending_ws.append(seq_ws)
            self.pending_rows += len(seq)
        if self.pending_rows:
            self._write_shard(*self._take_rows(self.pending_rows), pad)

    def _take_rows(self, n: int) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """The first ``n`` pending sequences, as the pending chunks (the last one cut), and their word starts; the
        rest stays pending (a cut chunk's remainder copied, so the written rows are freed with the shard)."""
        ids, ws, rows = [], [], 0
        while rows < n:
            chunk = self.pending.pop(0)
            chunk_ws = self.pending_ws.pop(0) if self.packer.wwm else None
            take = min(len(chunk), n - rows)
            if take < len(chunk):
                self.pending.insert(0, chunk[take:].copy())
                if chunk_ws is not None:
                    self.pending_ws.insert(0, chunk_ws[take:].copy())
                chunk, chunk_ws = chunk[:take], None if chunk_ws is None else chunk_ws[:take]
            ids.append(chunk)
            if chunk_ws is not None:
                ws.append(chunk_ws)
            rows += take
        self.pending_rows -= n
        return ids, ws if self.packer.wwm else None

    def _samples(self, ids: list[np.ndarray], ws: list[np.ndarray] | None):
        """(ids, word starts) of each sample of ``spp`` sequences (the last may be shorter), across the chunks: only
        a sample that spans chunks is copied."""
        buf, buf_ws, rows = [], [], 0
        for i, chunk in enumerate(ids):
            start = 0
            while start < len(chunk):
                take = min(len(chunk) - start, self.spp - rows)
                buf.append(chunk[start : start + take])
                if ws is not None:
                    buf_ws.append(ws[i][start : start + take])
                rows += take
                start += take
                if rows == self.spp:
                    yield self._joined(buf, buf_ws, ws is not None)
                    buf, buf_ws, rows = [], [], 0
        if rows:
            yield self._joined(buf, buf_ws, ws is not None)

    @staticmethod
    def _joined(buf: list[np.ndarray], buf_ws: list[np.ndarray], wwm: bool) -> tuple[np.ndarray, np.ndarray | None]:
        one = buf[0] if len(buf) == 1 else np.concatenate(buf)
        if not wwm:
            return one, None
        return one, buf_ws[0] if len(buf_ws) == 1 else np.concatenate(buf_ws)

    def _write_shard(self, ids: list[np.ndarray], ws: list[np.ndarray] | None, padding: int) -> None:
        """Write the sequences of ``ids`` (chunks) as the next shard, one sample at a time: memory holds the
        pending sequences once (at most a shard's worth per split, --shard_size_mb), never a copy of the shard."""
        k = len(self.shards)
        name = f"{self.split}/shard-{k:05d}.tar"
        path = self.root / name
        tmp = path.with_name(path.name + ".tmp")
        samples = sequences = tokens = 0
        # mtime=0 and fixed user/group: byte-identical tars for any --workers and after a resume.
        with tmp.open("wb") as fh, wds.TarWriter(fh, encoder=False, mtime=0) as tw:
            for sample_ids, sample_ws in self._samples(ids, ws):
                tw.write(encode_sample(f"{self.split}_{k:05d}_{samples:06d}", sample_ids, sample_ws))
                self.token_counts += np.bincount(sample_ids.reshape(-1), minlength=len(self.token_counts))
                samples += 1
                sequences += len(sample_ids)
                tokens += sample_ids.size
        os.replace(tmp, path)
        self.shards.append(
            ShardInfo(
                name=name,
                samples=samples,
                sequences=sequences,
                tokens=int(tokens - padding),
                padding_tokens=int(padding),
                sha256=sha256_file(path),
                bytes=path.stat().st_size,
            )
        )

    def pending_sequences(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The completed sequences not yet in a shard (and their word starts): a copy, for the resume state."""
        L = self.packer.L
        ids = np.concatenate(self.pending) if self.pending else np.zeros((0, L), self.packer.dtype)
        ws = None
        if self.packer.wwm:
            ws = np.concatenate(self.pending_ws) if self.pending_ws else np.zeros((0, L), bool)
        return ids, ws

    def restore(self, shards: list[ShardInfo], hashes: np.ndarray, token_counts: np.ndarray, pending: np.ndarray,
                pending_ws: np.ndarray | None, carry: np.ndarray, carry_ws: np.ndarray | None) -> None:
        """Continue where a writer with these shards, hashes, counts and pending sequences stopped."""
        self.shards = list(shards)
        self.hashes = HashArray(hashes)
        self.token_counts = token_counts.astype(np.int64)
        self.packer.carry = carry.astype(self.packer.dtype)
        if self.packer.wwm:
            self.packer.carry_ws = carry_ws.astype(bool)
        self.pending = [pending.astype(self.packer.dtype)] if len(pending) else []
        self.pending_ws = [pending_ws.astype(bool)] if self.packer.wwm and len(pending) else []
        self.pending_rows = len(pending)

    def save_token_counts(self) -> str:
        rel = f"{self.split}/token_counts.npy"
        np.save(self.root / rel, self.token_counts, allow_pickle=False)
        return rel

    def save_hashes(self) -> str:
        rel = f"{self.split}/documents.npy"
        np.save(self.root / rel, self.hashes.view().astype(np.uint64), allow_pickle=False)
        return rel

