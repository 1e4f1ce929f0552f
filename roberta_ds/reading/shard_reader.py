"""Random access to single sequences inside the shards, reading only the bytes of the sequences asked for.

The tar files are plain WebDataset shards (shard_format.py), written with fixed-size headers and one group of
sequences per sample, so where every sequence lies follows from the manifest (sequences per sample, length,
dtype, word starts or not) plus what the first and last sample of a shard say about themselves: their tar
header (the sample key) and their .npy header lengths. A shard is opened once per process; opening it reads
those two samples' headers (about 2.5 KiB) and checks the file's size against the layout. After that, a
sequence costs one seek and one read of its own bytes (2 bytes per token, plus L/8 bytes of word starts).

What is read is checked: every sequence must start with [CLS] (every packed sequence does) and hold ids inside
the vocabulary; a sequence in the wrong place or a damaged byte range fails those checks and raises an error
naming the shard, the sample and the fix. What is not read is not checked: `python -m data_tools verify` hashes
every shard.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roberta_ds.shard_format import IDS_MEMBER, WWM_MEMBER, Manifest, ShardFormatError

BLOCK = 512
"""Tar header and data alignment."""


def _padded(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


@dataclass(frozen=True)
class _Member:
    """One .npy member of a sample: where its data (after the .npy header) starts, and its row size."""

    data_start: int
    """Offset of the member's first row, relative to the sample's start."""
    end: int
    """Offset just past the member (data padded to the block), relative to the sample's start."""


@dataclass(frozen=True)
class _Layout:
    key_prefix: str
    """Sample keys are key_prefix + 6-digit sample number (shard_writer)."""
    sample_bytes: int
    """Bytes from the start of one full sample to the next."""
    full: tuple[_Member, ...]
    """The members (ids, then word starts with --wwm) of a full sample."""
    last: tuple[_Member, ...]
    """The same for the shard's last sample (it may hold fewer sequences)."""


class ShardReader:
    """Reads sequences (rows) of one split's shards by (shard, sample, row); counts what it read."""

    def __init__(self, root: Path, manifest: Manifest, split: str) -> None:
        self.root = Path(root)
        self.split = split
        self.shards = manifest.splits[split].shards
        self.paths = manifest.shard_paths(self.root, split)
        self.packed_len = manifest.max_seq_length
        self.spp = manifest.sequences_per_sample
        self.wwm = manifest.wwm
        self.dtype = np.dtype(manifest.dtype).newbyteorder("<")
        self.vocab = manifest.tokenizer.vocab_size
        self.cls_id = manifest.tokenizer.cls_id
        self.row_bytes = self.packed_len * self.dtype.itemsize
        self.ws_row_bytes = -(-self.packed_len // 8)
        self.bytes_read = 0
        """Bytes read from the shards by this process (headers included)."""
        self.rows_read = 0
        """Reads of (part of) a sequence."""
        self.tokens_read = 0
        self._layouts: dict[int, _Layout] = {}
        self._files: dict[int, io.BufferedReader] = {}
        self._pid = os.getpid()

    # ------------------------------------------------------------------ rows of a sample
    def sample_rows(self, shard: int, sample: int) -> int:
        info = self.shards[shard]
        return info.sequences - (info.samples - 1) * self.spp if sample == info.samples - 1 else self.spp

    def key(self, shard: int, sample: int) -> str:
        return f"{self._layout(shard).key_prefix}{sample:06d}"

    def read(self, shard: int, sample: int, row: int, start: int = 0, length: int | None = None
             ) -> tuple[np.ndarray, np.ndarray | None]:
        """Tokens ``start:start+length`` of one sequence (default all): (ids, word-start flags or None), checked."""
        length = self.packed_len - start if length is None else min(length, self.packed_len - start)
        lay = self._layout(shard)
        members = lay.last if sample == self.shards[shard].samples - 1 else lay.full
        base = sample * lay.sample_bytes
        at = base + members[0].data_start + row * self.row_bytes + start * self.dtype.itemsize
        ids = np.frombuffer(self._read(shard, at, length * self.dtype.itemsize, sample), dtype=self.dtype)
        if int(ids.max()) >= self.vocab:
            raise self.damaged(shard, self.key(shard, sample),
                               f"token ids outside the vocabulary (0..{self.vocab - 1}): max {int(ids.max())}")
        if start == 0 and ids[0] != self.cls_id:
            raise self.damaged(shard, self.key(shard, sample), f"sequence {row} starts with id {int(ids[0])}, not "
                                                               f"[CLS] ({self.cls_id}): bytes out of place")
        ws = None
        if self.wwm:
            first, last = start // 8, -(-(start + length) // 8)
            raw = self._read(shard, base + members[1].data_start + row * self.ws_row_bytes + first, last - first,
                             sample)
            bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
            ws = bits[start - 8 * first : start - 8 * first + length].astype(bool)
        self.rows_read += 1
        self.tokens_read += length
        return ids, ws

    # ------------------------------------------------------------------ errors
    def damaged(self, shard: int, sample: str, what: str) -> ShardFormatError:
        return ShardFormatError(
            f"{self.root}/{self.shards[shard].name}, sample {sample}: {what}. The shard is damaged (an interrupted "
            f"copy, a bad disk); run `python -m data_tools verify {self.root}` to check every shard against the "
            "manifest, then copy the shard again or re-pack"
        )

    # ------------------------------------------------------------------ files and layout
    def _file(self, shard: int) -> io.BufferedReader:
        if self._pid != os.getpid():  # a loader worker forked with its parent's handles: open its own
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(shard)
        if f is None:
            try:
                f = open(self.paths[shard], "rb", buffering=0)  # noqa: SIM115 - kept open for the reader's lifetime
            except OSError as e:
                raise self.damaged(shard, "(none)", f"cannot open it ({e.strerror})") from e
            self._files[shard] = f
        return f

    def _read(self, shard: int, offset: int, n: int, sample: int | str) -> bytes:
        f = self._file(shard)
        f.seek(offset)
        data = f.read(n)
        self.bytes_read += len(data)
        if len(data) != n:
            key = self.key(shard, sample) if isinstance(sample, int) and shard in self._layouts else sample
            raise self.damaged(shard, key, f"the archive ends inside it ({len(data)} of {n} bytes at offset {offset})")
        return data

    def _members(self, shard: int, start: int, sample: int) -> tuple[str, tuple[_Member, ...]]:
        """Read one sample's tar and .npy headers: (its key, its members relative to ``start``)."""
        names = [IDS_MEMBER] + ([WWM_MEMBER] if self.wwm else [])
        members, at, key = [], 0, None
        rows = self.sample_rows(shard, sample)
        for name in names:
            head = self._read(shard, start + at, 2 * BLOCK, f"#{sample}")
            try:
                info = tarfile.TarInfo.frombuf(head[:BLOCK], "utf-8", "surrogateescape")
            except tarfile.TarError as e:
                raise self.damaged(shard, f"#{sample}", f"cannot read the tar header ({e})") from e
            this_key, _, member = info.name.partition(".")
            if member != name or (key is not None and this_key != key):
                raise self.damaged(shard, f"#{sample}", f"expected a {name} member, found {info.name!r}")
            key = this_key
            npy = io.BytesIO(head[BLOCK:])
            try:
                version = np.lib.format.read_magic(npy)
                shape, _, dtype = (np.lib.format.read_array_header_1_0(npy) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(npy))
            except (ValueError, OSError) as e:
                raise self.damaged(shard, key, f"cannot read the .npy header of {name} ({e})") from e
            width = self.packed_len if name == IDS_MEMBER else self.ws_row_bytes
            want_dtype = self.dtype if name == IDS_MEMBER else np.dtype(np.uint8)
            if tuple(shape) != (rows, width) or dtype != want_dtype:
                raise self.damaged(shard, key, f"{name} holds {dtype}{list(shape)}, the manifest implies "
                                                f"{want_dtype}[{rows}, {width}]")
            data_start = at + BLOCK + npy.tell()
            members.append(_Member(data_start, at + BLOCK + _padded(info.size)))
            at = members[-1].end
        return key, tuple(members)

    def _layout(self, shard: int) -> _Layout:
        lay = self._layouts.get(shard)
        if lay is not None:
            return lay
        info = self.shards[shard]
        key0, full = self._members(shard, 0, 0)
        sample_bytes = full[-1].end
        last_start = (info.samples - 1) * sample_bytes
        size = os.stat(self.paths[shard]).st_size

        def wrong_size(end: int) -> ShardFormatError:
            return self.damaged(shard, "(layout)", f"the file is {size:,} bytes, its {info.samples} samples take "
                                                   f"{end:,}: truncated or not written by data_tools pack")

        if size < last_start + 2 * BLOCK:
            raise wrong_size(last_start + 2 * BLOCK)
        last = full if info.samples == 1 else self._members(shard, last_start, info.samples - 1)[1]
        end = last_start + last[-1].end  # then two zero blocks and the record padding (tar end of archive)
        if not end + 2 * BLOCK <= size <= end + 2 * BLOCK + tarfile.RECORDSIZE:
            raise wrong_size(end)
        if not key0.endswith("000000"):
            raise self.damaged(shard, key0, "the first sample's key does not end in 000000")
        lay = _Layout(key0[:-6], sample_bytes, full, last)
        self._layouts[shard] = lay
        return lay

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def __getstate__(self) -> dict:  # loader workers get the layouts, not the open files
        return {**self.__dict__, "_files": {}}
