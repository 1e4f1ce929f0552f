"""Near-duplicate removal: MinHash over character n-grams with LSH banding, from rensa (Rust; RMinHash and its
RMinHashDeduplicator, which checks every LSH candidate's estimated Jaccard similarity against the threshold).

A news crawl carries one wire story many times, under other bylines, footers and small edits. Exact dedup (8-byte
content hashes, pack_job) keeps every copy; here a document is dropped when its estimated Jaccard similarity to a
document kept earlier in the input is at least the threshold. Shingles are character 5-grams of the normalised text
with whitespace removed (Chinese has no spaces to make words of; five characters are one to three words).

Determinism: signatures use a fixed seed; documents are indexed in input order (the pool returns results in order),
so the same input keeps the same documents for any --workers, and near-duplicates never straddle the
train/validation split (only the first copy reaches a split).

Two ways to run it:
- ``pack --near_dedup``: inline, over the one input the pack reads.
- ``data_tools near-dups`` then ``pack --part I/N --drop_list DIR``: near-duplicates cross parts (a document's part
  is its exact content hash), so one pass over the whole input writes the content hashes to drop (8 bytes each)
  and every part reads them. Both ways drop the same documents (tests/test_near_dedup.py).

Memory: the index holds every kept document's signature and band hashes, measured at about 2.2 KB per kept
document (RSS growth over 50,000 signatures in one process; bench/pack_scale.py's near arm peaked 57 MiB above the
plain pack's with 23,000 kept documents): 1 M documents, about 2 GB. A pack resumed
after a kill reloads the kept signatures from its state (``near-minhashes.bin``, about 560 bytes a document).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

NGRAM = 5
"""Characters per shingle."""
NUM_PERM = 128
BANDS = 16
"""LSH bands of NUM_PERM // BANDS rows: a pair at Jaccard 0.7 becomes a candidate with probability 0.87, at 0.8 with
0.99 (1 - (1 - J**8)**16); candidates are then checked against the threshold."""
SEED = 42
DEFAULT_THRESHOLD = 0.7
DROP_HASHES = "drop_hashes.u64"
"""In a drop list directory: the sorted content hashes (tokenize_worker.doc_hash, little-endian uint64) to drop."""
DROP_INFO = "near_dups.json"
EXACT_COPIES = "exact_copies.u64"
"""In a drop list from `near-dups --executor local|slurm`: the sorted keys (file index * 2**40 + record number) of the
documents that repeat one read before them, exactly: what `pack --part_by files` parts drop (data_tools.dt_near_dups)."""
RECORD_BITS = 40


def copy_key(file_index: int, record: int) -> int:
    return (file_index << RECORD_BITS) | record
_RECORD = struct.Struct("<QI")  # key, signature length


def shingles(text: str) -> list[str]:
    t = "".join(text.split())
    if len(t) <= NGRAM:
        return [t]
    return [t[i : i + NGRAM] for i in range(len(t) - NGRAM + 1)]


def signature(text: str) -> bytes:
    """The MinHash signature of a normalised document, serialised (rensa's own state: about 560 bytes)."""
    from rensa import RMinHash

    m = RMinHash(NUM_PERM, SEED)
    m.update(shingles(text))
    return m.__getstate__()


def _minhash(sig: bytes):
    from rensa import RMinHash

    m = RMinHash(NUM_PERM, SEED)
    m.__setstate__(sig)
    return m


def near_dedup_settings(threshold: float) -> dict:
    """What the manifest and a drop list record of the method."""
    return {"threshold": threshold, "method": "MinHash LSH (rensa RMinHashDeduplicator), estimated Jaccard",
            "shingles": f"character {NGRAM}-grams of the normalised text without whitespace", "num_perm": NUM_PERM,
            "bands": BANDS, "seed": SEED}


def check_threshold(threshold: float) -> list[str]:
    if not 0.0 < threshold < 1.0:
        return [f"--near_dedup_threshold {threshold}: an estimated Jaccard similarity in (0, 1), e.g. "
                f"{DEFAULT_THRESHOLD} (higher drops fewer, closer copies)"]
    return []


class NearDupIndex:
    """The documents kept so far; ``add`` keeps a document or names the kept one it nearly duplicates."""

    def __init__(self, threshold: float):
        try:
            from rensa import RMinHashDeduplicator
        except ImportError:
            raise ValueError("near-duplicate removal needs the rensa package: pip install 'roberta-ds[crawl]' "
                             "(or pip install 'rensa>=0.5,<0.6')") from None

        self._index = RMinHashDeduplicator(threshold=threshold, num_perm=NUM_PERM, use_lsh=True, num_bands=BANDS,
                                           seed=SEED)
        self._unsaved: list[tuple[int, bytes]] = []

    def add(self, key: int, sig: bytes) -> bool:
        """Index document ``key`` (its input number) and return True, or return False for a near-duplicate of a
        document indexed before (which is not indexed)."""
        if self._index.add(str(key), _minhash(sig)):
            self._unsaved.append((key, sig))
            return True
        return False

    def similar_to(self, sig: bytes) -> int | None:
        """The first indexed document (by input number) that ``sig`` nearly duplicates (None if rensa names none)."""
        return min((int(k) for k in self._index.get_duplicates(_minhash(sig))), default=None)

    def save(self, path: Path, saved: int) -> int:
        """Append the signatures kept since the last save to ``path`` at byte ``saved`` (dropping anything past it:
        a save killed before its state.json); returns the file's new length."""
        with path.open("r+b" if path.exists() else "wb") as fh:
            fh.seek(saved)
            fh.truncate()
            for key, sig in self._unsaved:
                fh.write(_RECORD.pack(key, len(sig)))
                fh.write(sig)
            end = fh.tell()
        self._unsaved.clear()
        return end

    def restore(self, path: Path, length: int) -> None:
        """Index the signatures of the first ``length`` bytes of ``path`` (written by ``save``), in their order."""
        data = path.read_bytes()[:length] if length else b""
        if len(data) != length:
            raise ValueError(f"{path}: the near-duplicate index of the resume state is shorter than its checkpoint "
                             f"says ({len(data)} of {length} bytes); delete the output directory and pack again.")
        pos = 0
        while pos < length:
            key, n = _RECORD.unpack_from(data, pos)
            pos += _RECORD.size
            self._index.add(str(key), _minhash(data[pos : pos + n]))
            pos += n


@dataclass
class DropList:
    """A `data_tools near-dups` result: the content hashes to drop and the options it was computed with."""

    hashes: np.ndarray
    info: dict
    copies: np.ndarray | None = None
    """EXACT_COPIES' keys, when the list has them (datatrove's pass); None for the inline pass's lists."""

    @classmethod
    def load(cls, root: Path) -> "DropList":
        root = Path(root)
        if not (root / DROP_INFO).exists() or not (root / DROP_HASHES).exists():
            raise ValueError(f"--drop_list {root}: not a drop list (no {DROP_INFO} and {DROP_HASHES}); write one with "
                             "`data_tools near-dups` over the whole input")
        import numpy as np

        info = json.loads((root / DROP_INFO).read_text(encoding="utf-8"))
        hashes = np.fromfile(root / DROP_HASHES, dtype="<u8")
        if len(hashes) != info["documents_dropped"]:
            raise ValueError(f"--drop_list {root}: {DROP_HASHES} holds {len(hashes)} hashes, {DROP_INFO} says "
                             f"{info['documents_dropped']}; write it again with `data_tools near-dups`")
        copies = np.fromfile(root / EXACT_COPIES, dtype="<u8") if (root / EXACT_COPIES).exists() else None
        if copies is not None and len(copies) != info.get("exact_copies"):
            raise ValueError(f"--drop_list {root}: {EXACT_COPIES} holds {len(copies)} keys, {DROP_INFO} says "
                             f"{info.get('exact_copies')}; write it again with `data_tools near-dups`")
        return cls(hashes, info, copies)

    def is_copy(self, file_index: int, record: int) -> bool:
        """Whether the document is an exact copy of one read before it (in this file or an earlier one)."""
        import numpy as np

        key = np.uint64(copy_key(file_index, record))
        i = int(np.searchsorted(self.copies, key))
        return i < len(self.copies) and self.copies[i] == key

    def __contains__(self, h: int) -> bool:
        import numpy as np

        i = int(np.searchsorted(self.hashes, np.uint64(h)))
        return i < len(self.hashes) and int(self.hashes[i]) == h

    def conflicts(self, options: dict) -> list[str]:
        """The options of the pack that differ from those the list was computed with (which documents it saw)."""
        from data_tools.quality import comparable

        theirs, options = comparable(self.info["options"]), comparable(options)
        return [f"--{k}: {theirs.get(k)!r} in the drop list, {v!r} in this pack"
                for k, v in options.items() if theirs.get(k) != v]
