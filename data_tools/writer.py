"""Shard writing, the resume state file, and nothing else.

A split's completed sequences wait in memory until a shard's worth (``--shard_size_mb``) is there;
the shard is then written whole with ``webdataset.TarWriter`` to ``shard-NNNNN.tar.tmp`` and renamed.
So memory is bounded by one shard per split, and a shard on disk is always complete.

Resume: after every completed shard, ``.pack_state/state.json`` records the documents consumed
from the reader, each split's pending sequences, its carry-over tokens (the unfinished block),
its document hashes and completed shards (with sha256), and the counters. Array payloads go to
``gen-<n>-<split>.npz`` written before the JSON that names them, so a kill at any point leaves a
consistent older state.
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


class SplitWriter:
    """Sequences of one split -> DIR/<split>/shard-NNNNN.tar; also owns the split's Packer."""

    def __init__(self, root: Path, split: str, packer: Packer, spp: int, shard_size_mb: float):
        self.root, self.split, self.packer, self.spp = root, split, packer, spp
        L, itemsize = packer.L, packer.dtype.itemsize
        sample_bytes = spp * L * itemsize
        # floor: shards stay under --shard_size_mb unless one sample alone is bigger.
        self.rows_per_shard = spp * max(1, int(shard_size_mb * 2**20) // sample_bytes)
        self.pending: list[np.ndarray] = []
        self.pending_ws: list[np.ndarray] = []
        self.pending_rows = 0
        self.shards: list[ShardInfo] = []
        self.hashes: list[int] = []
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
        ids, ws = self._take_pending()
        self._put_pending(ids, ws)
        arrays = {
            "pending": ids,
            "carry": self.packer.carry,
            "hashes": np.asarray(self.hashes, dtype=np.uint64),
        }
        if ws is not None:
            arrays["pending_ws"] = ws
            arrays["carry_ws"] = self.packer.carry_ws
        return arrays

    def restore(self, shards: list[dict], arrays: dict[str, np.ndarray]) -> None:
        self.shards = [ShardInfo(**s) for s in shards]
        self.hashes = [int(h) for h in arrays["hashes"]]
        self.packer.carry = arrays["carry"].astype(self.packer.dtype)
        ws = arrays["pending_ws"] if self.packer.wwm else None
        if self.packer.wwm:
            self.packer.carry_ws = arrays["carry_ws"].astype(bool)
        self._put_pending(arrays["pending"].astype(self.packer.dtype), ws)

    def save_hashes(self) -> str:
        rel = f"{self.split}/documents.npy"
        np.save(self.root / rel, np.asarray(self.hashes, dtype=np.uint64), allow_pickle=False)
        return rel


def save_state(root: Path, gen: int, writers: dict[str, SplitWriter], consumed: int, options: dict, counters: dict) -> None:
    sdir = root / STATE_DIRNAME
    sdir.mkdir(exist_ok=True)
    splits = {}
    for name, w in writers.items():
        fname = f"gen-{gen}-{name}.npz"
        with (sdir / fname).open("wb") as fh:
            np.savez(fh, **w.state_arrays())
        splits[name] = {"arrays": fname, "shards": [asdict(s) for s in w.shards]}
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


def clear_state(root: Path) -> None:
    sdir = root / STATE_DIRNAME
    if sdir.exists():
        for f in sdir.iterdir():
            f.unlink()
        sdir.rmdir()
