"""Shard writing, the resume state file, and nothing else.

A split's completed sequences wait in memory until a shard's worth (``--shard_size_mb``) is there;
the shard is then written whole with ``webdataset.TarWriter`` to ``shard-NNNNN.tar.tmp`` and renamed.
So memory is bounded by one shard per split, and a shard on disk is always complete.

A split's document hashes (documents.npy) grow with the corpus: they live in a growable numpy
uint64 array (8 bytes a document, up to 16 with the doubling slack), not a list of Python ints.

Resume: after every completed shard, ``.pack_state/state.json`` records the documents consumed
from the reader, each split's completed shards (with sha256), its hash count, and the counters.
Bounded array payloads (pending sequences, carry-over tokens) go to ``gen-<n>-<split>.npz``; the
hashes go to an append-only ``<split>-hashes.u64`` (raw little-endian uint64) that each checkpoint
extends by only the hashes added since the previous one, so checkpoint I/O is linear in the corpus,
not quadratic. Both are written before the JSON that names them and counts the hashes; resume
reads exactly that many (bytes past them are from a checkpoint that never completed), so a kill
at any point leaves a consistent older state.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import webdataset as wds

from data_tools.packing import Packer
from roberta_ds.shard_format import ShardInfo, encode_sample, sha256_file

STATE_DIRNAME = ".pack_state"
STATE_NAME = "state.json"
_HASH_DTYPE = np.dtype("<u8")


class HashArray:
    """Append-only uint64 array with amortised doubling: 8 bytes a hash instead of a list's
    8-byte pointer plus a 36-byte Python int."""

    def __init__(self, values: np.ndarray | None = None):
        values = np.zeros(0, _HASH_DTYPE) if values is None else np.asarray(values, _HASH_DTYPE)
        self._buf = np.empty(max(1024, 2 * len(values)), _HASH_DTYPE)
        self._buf[: len(values)] = values
        self._n = len(values)

    def append(self, h: int) -> None:
        if self._n == len(self._buf):
            grown = np.empty(2 * len(self._buf), _HASH_DTYPE)
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
        self.hashes_saved = 0
        """How many of self.hashes the resume state's hash file holds."""
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

    # ------------------------------------------------------------ resume state

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The bounded part of the resume state (the hashes go to save_new_hashes)."""
        ids, ws = self._take_pending()
        self._put_pending(ids, ws)
        arrays = {"pending": ids, "carry": self.packer.carry, "token_counts": self.token_counts}
        if ws is not None:
            arrays["pending_ws"] = ws
            arrays["carry_ws"] = self.packer.carry_ws
        return arrays

    def save_new_hashes(self, path: Path) -> int:
        """Append the hashes added since the last checkpoint to ``path``; return the total count.

        Writes at the checkpointed length, dropping anything past it (left by a checkpoint that
        was killed before its state.json), so the file always equals the first ``count`` hashes.
        """
        with path.open("r+b" if path.exists() else "wb") as fh:
            fh.seek(self.hashes_saved * _HASH_DTYPE.itemsize)
            fh.truncate()
            fh.write(self.hashes.view()[self.hashes_saved :].tobytes())
        self.hashes_saved = len(self.hashes)
        return self.hashes_saved

    def restore(self, shards: list[dict], arrays: dict[str, np.ndarray], hashes: np.ndarray) -> None:
        self.shards = [ShardInfo(**s) for s in shards]
        self.hashes = HashArray(hashes)
        self.hashes_saved = len(hashes)
        if "token_counts" not in arrays:
            raise ValueError(f"{self.root}: the resume state was written by an older data_tools without token counts; "
                             f"delete {self.root} and pack again.")
        self.token_counts = arrays["token_counts"].astype(np.int64)
        self.packer.carry = arrays["carry"].astype(self.packer.dtype)
        ws = arrays["pending_ws"] if self.packer.wwm else None
        if self.packer.wwm:
            self.packer.carry_ws = arrays["carry_ws"].astype(bool)
        self._put_pending(arrays["pending"].astype(self.packer.dtype), ws)

    def save_token_counts(self) -> str:
        rel = f"{self.split}/token_counts.npy"
        np.save(self.root / rel, self.token_counts, allow_pickle=False)
        return rel

    def save_hashes(self) -> str:
        rel = f"{self.split}/documents.npy"
        np.save(self.root / rel, self.hashes.view().astype(np.uint64), allow_pickle=False)
        return rel


def save_state(root: Path, gen: int, writers: dict[str, SplitWriter], consumed: int, options: dict, counters: dict) -> None:
    sdir = root / STATE_DIRNAME
    sdir.mkdir(exist_ok=True)
    splits = {}
    for name, w in writers.items():
        fname = f"gen-{gen}-{name}.npz"
        with (sdir / fname).open("wb") as fh:
            np.savez(fh, **w.state_arrays())
        hashes = f"{name}-hashes.u64"
        count = w.save_new_hashes(sdir / hashes)
        splits[name] = {"arrays": fname, "hashes": hashes, "hash_count": count, "shards": [asdict(s) for s in w.shards]}
    state = {"generation": gen, "options": options, "documents_consumed": consumed, "counters": counters, "splits": splits}
    tmp = sdir / (STATE_NAME + ".tmp")
    tmp.write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, sdir / STATE_NAME)
    for old in sdir.glob("gen-*.npz"):  # only after the new state.json names the new files
        if not old.name.startswith(f"gen-{gen}-"):
            old.unlink()


def load_state(root: Path) -> dict | None:
    path = root / STATE_DIRNAME / STATE_NAME
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def load_state_arrays(root: Path, fname: str) -> dict[str, np.ndarray]:
    with np.load(root / STATE_DIRNAME / fname, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_state_hashes(root: Path, fname: str, count: int) -> np.ndarray:
    """The first ``count`` hashes of the split's hash file (the checkpointed ones)."""
    path = root / STATE_DIRNAME / fname
    have = path.stat().st_size // _HASH_DTYPE.itemsize if path.exists() else 0
    if have < count:
        raise ValueError(f"{path}: {have} hashes, the resume state needs {count}; delete {root} and pack again.")
    return np.fromfile(path, dtype=_HASH_DTYPE, count=count)


def clear_state(root: Path) -> None:
    sdir = root / STATE_DIRNAME
    if sdir.exists():
        for f in sdir.iterdir():
            f.unlink()
        sdir.rmdir()
