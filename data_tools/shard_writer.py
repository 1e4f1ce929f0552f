"""Shard writing: one split's sequences -> DIR/<split>/shard-NNNNN.tar, and nothing else.

A split's completed sequences wait in memory until a shard's worth (``--shard_size_mb``) is there;
the shard is then written whole with ``webdataset.TarWriter`` to ``shard-NNNNN.tar.tmp`` and renamed.
So memory is bounded by one shard per split, and a shard on disk is always complete.

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
            ids_all, ws_all = self._take_pending()
            self._write_shard(ids_all[: self.rows_per_shard], None if ws_all is None else ws_all[: self.rows_per_shard], 0)
            self._put_pending(ids_all[self.rows_per_shard :], None if ws_all is None else ws_all[self.rows_per_shard :])
            wrote = True
        return wrote

    def finish(self) -> None:
        """Pad the remainder block and write everything left as the split's last shard."""
        seq, seq_ws, pad = self.packer.finish()
        ids_all, ws_all = self._take_pending()
        if len(seq):
            ids_all = np.concatenate([ids_all, seq])
            if ws_all is not None:
                ws_all = np.concatenate([ws_all, seq_ws])
        if len(ids_all):
            self._write_shard(ids_all, ws_all, pad)

    def _take_pending(self) -> tuple[np.ndarray, np.ndarray | None]:
        L = self.packer.L
        ids = np.concatenate(self.pending) if self.pending else np.zeros((0, L), self.packer.dtype)
        ws = None
        if self.packer.wwm:
            ws = np.concatenate(self.pending_ws) if self.pending_ws else np.zeros((0, L), bool)
        self.pending, self.pending_ws, self.pending_rows = [], [], 0
        return ids, ws

    def _put_pending(self, ids: np.ndarray, ws: np.ndarray | None) -> None:
        if len(ids):
            self.pending = [ids]
            self.pending_ws = [ws] if ws is not None else []
            self.pending_rows = len(ids)

    def _write_shard(self, ids: np.ndarray, ws: np.ndarray | None, padding: int) -> None:
        k = len(self.shards)
        name = f"{self.split}/shard-{k:05d}.tar"
        path = self.root / name
        tmp = path.with_name(path.name + ".tmp")
        samples = 0
        # mtime=0 and fixed user/group: byte-identical tars for any --workers and after a resume.
        with tmp.open("wb") as fh, wds.TarWriter(fh, encoder=False, mtime=0) as tw:
            for start in range(0, len(ids), self.spp):
                chunk_ws = None if ws is None else ws[start : start + self.spp]
                tw.write(encode_sample(f"{self.split}_{k:05d}_{samples:06d}", ids[start : start + self.spp], chunk_ws))
                samples += 1
        os.replace(tmp, path)
        self.token_counts += np.bincount(ids.reshape(-1), minlength=len(self.token_counts)).astype(np.int64)
        self.shards.append(
            ShardInfo(
                name=name,
                samples=samples,
                sequences=len(ids),
                tokens=int(ids.size - padding),
                padding_tokens=int(padding),
                sha256=sha256_file(path),
                bytes=path.stat().st_size,
            )
        )

    def pending_sequences(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The completed sequences not yet in a shard (and their word starts): a snapshot, kept pending."""
        ids, ws = self._take_pending()
        self._put_pending(ids, ws)
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
        self._put_pending(pending.astype(self.packer.dtype), pending_ws if self.packer.wwm else None)

    def save_token_counts(self) -> str:
        rel = f"{self.split}/token_counts.npy"
        np.save(self.root / rel, self.token_counts, allow_pickle=False)
        return rel

    def save_hashes(self) -> str:
        rel = f"{self.split}/documents.npy"
        np.save(self.root / rel, self.hashes.view().astype(np.uint64), allow_pickle=False)
        return rel

