"""The on-disk shard format: one module that the writer (data_tools) and the reader (roberta_ds.reading.data) import.

A dataset directory looks like::

    DIR/manifest.json            written last, atomically; the only entry point
    DIR/tokenizer/               the tokenizer the ids belong to (save_pretrained output)
    DIR/train/shard-00000.tar    plain WebDataset tar files
    DIR/validation/shard-00000.tar

Each tar member group (one WebDataset sample) holds a *group* of packed sequences, not one:
a 512-token sequence alone costs 1 KiB of ids plus a 512-byte tar header and 512-byte
alignment, i.e. ~4 bytes/token; grouping ~32 Ki tokens per sample brings it to ~2.03 bytes/token.

    <key>.input_ids.npy     uint16 (int32 if the vocab exceeds 65,535 ids) array [n, max_seq_length]
    <key>.word_starts.npy   (only with --wwm) uint8 np.packbits(flags, axis=1) of the per-token
                            "this token starts a jieba word" flags, [n, ceil(max_seq_length/8)]

uint16 because a 21,128-id vocab fits and it halves disk and I/O against int32.
Every sequence starts with [CLS]; documents are joined by [SEP] (RoBERTa FULL-SENTENCES);
only the last sequence of a shard may hold [PAD], and its ShardInfo.padding_tokens counts it. A single
pack pads only its split's last shard; a dataset merged from parts (`data_tools merge`, shards named
SPLIT/partI-shard-NNNNN.tar) may pad the last shard of every part in each split.
A plain ``webdataset.WebDataset(urls).decode()`` reads these samples as numpy arrays.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from roberta_ds.tokenizer import TokenizerInfo

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TOKENIZER_DIRNAME = "tokenizer"
IDS_MEMBER = "input_ids.npy"
WWM_MEMBER = "word_starts.npy"
SPLITS = ("train", "validation")
TOKENS_PER_SAMPLE = 32768
"""Target tokens per WebDataset sample (group of sequences); see the module docstring."""


class ShardFormatError(ValueError):
    """The shard directory is missing, damaged, or from an incompatible version/tokenizer."""


def sequences_per_sample(max_seq_length: int) -> int:
    return max(1, TOKENS_PER_SAMPLE // max_seq_length)


def ids_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


@dataclass
class ShardInfo:
    name: str
    """Path relative to the dataset directory."""
    samples: int
    """WebDataset samples (groups of sequences) in the tar."""
    sequences: int
    tokens: int
    """Non-padding tokens, special tokens included."""
    padding_tokens: int
    """[PAD] tokens, all in the shard's last sequence (see the module docstring for which shards have any)."""
    sha256: str
    bytes: int


@dataclass
class SplitInfo:
    documents: int = 0
    """Documents packed into this split (after dedup and empty-drop)."""
    document_hashes: str = ""
    """Relative path of a .npy of uint64 content hashes (blake2b, 8 bytes) of each packed, normalised
    document in order: 8 bytes a document keeps the manifest small; used for train/validation leak checks."""
    shards: list[ShardInfo] = field(default_factory=list)
    token_counts: str = ""
    """Relative path of a .npy of int64 occurrences of every token id in the split's shards (padding
    included); the unigram line is computed from it. Empty for datasets packed before it existed."""

    @property
    def sequences(self) -> int:
        return sum(s.sequences for s in self.shards)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.shards)

    @property
    def padding_tokens(self) -> int:
        return sum(s.padding_tokens for s in self.shards)


@dataclass
class Manifest:
    tokenizer: TokenizerInfo
    max_seq_length: int
    wwm: bool
    dtype: str
    sequences_per_sample: int
    splits: dict[str, SplitInfo]
    corpus: dict
    """Reading/cleaning statistics: documents read, empty, duplicates dropped, decode errors, [UNK] rate..."""
    source: dict
    """How the data was made: format, input path, options, tool version."""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tokenizer"] = self.tokenizer.to_dict()
        for name, split in self.splits.items():
            d["splits"][name]["sequences"] = split.sequences
            d["splits"][name]["tokens"] = split.tokens
            d["splits"][name]["padding_tokens"] = split.padding_tokens
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        splits = {}
        for name, s in d["splits"].items():
            splits[name] = SplitInfo(
                documents=s["documents"],
                document_hashes=s.get("document_hashes", ""),
                shards=[ShardInfo(**sh) for sh in s["shards"]],
                token_counts=s.get("token_counts", ""),
            )
        return cls(
            tokenizer=TokenizerInfo.from_dict(d["tokenizer"]),
            max_seq_length=d["max_seq_length"],
            wwm=d["wwm"],
            dtype=d["dtype"],
            sequences_per_sample=d["sequences_per_sample"],
            splits=splits,
            corpus=d["corpus"],
            source=d["source"],
            format_version=d["format_version"],
        )

    @property
    def unigram_nats(self) -> float | None:
        """The held-out loss of a model that ignores context (see ``unigram_line``), None if not recorded."""
        u = self.corpus.get("unigram")
        return None if u is None else float(u["nats"])

    def shard_paths(self, root: Path, split: str) -> list[Path]:
        if split not in self.splits or not self.splits[split].shards:
            have = [k for k, v in self.splits.items() if v.shards]
            raise ShardFormatError(
                f"{root}: the manifest has no shards for split {split!r} (splits with shards: {have}). "
                "Re-run `python -m data_tools pack` with --val_fraction > 0 for a validation split."
            )
        return [root / s.name for s in self.splits[split].shards]


UNIGRAM_DEFINITION = (
    "cross-entropy (nats per token) of the validation split's maskable tokens (all but [PAD] [CLS] [SEP] [MASK] "
    "[UNK]) under the training split's token frequencies (add-0.5 smoothing): the held-out loss of a model that "
    "learned which tokens are frequent but no context. An encoder whose held-out loss sits at this line has "
    "learned nothing a bag of token counts would not know."
)


def unigram_line(train_counts: np.ndarray, val_counts: np.ndarray, tok: TokenizerInfo) -> dict:
    """The plateau every masked LM first reaches: see UNIGRAM_DEFINITION."""
    keep = np.ones(len(train_counts), dtype=bool)
    keep[[tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id, tok.unk_id]] = False
    ct, cv = train_counts[keep].astype(np.float64), val_counts[keep].astype(np.float64)
    p = (ct + 0.5) / (ct.sum() + 0.5 * len(ct))
    n = cv.sum()
    nats = float(-(cv * np.log(p)).sum() / n) if n else float("nan")
    return {"nats": nats, "validation_tokens": int(n), "definition": UNIGRAM_DEFINITION}


def source_stamp(tool: str) -> dict:
    """Who wrote a dataset and when: the manifest's source fields every writer (pack, merge) sets alike."""
    from datetime import datetime, timezone

    import roberta_ds

    return {"tool": tool, "roberta_ds_version": roberta_ds.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Write atomically: a reader sees either no manifest or a complete one."""
    tmp = root / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, root / MANIFEST_NAME)


def read_manifest(root: str | Path) -> Manifest:
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.exists():
        hint = ""
        if root.exists() and any(root.glob("*/*.tar")):
            hint = " Shards exist but no manifest: the pack was interrupted; re-run the same pack command to finish it."
        raise ShardFormatError(
            f"{path} not found: --data_dir must be a directory written by `python -m data_tools pack`.{hint}"
        )
    d = json.loads(path.read_text(encoding="utf-8"))
    version = d.get("format_version")
    if version != FORMAT_VERSION:
        raise ShardFormatError(
            f"{path}: shard format version {version}, this roberta-ds reads version {FORMAT_VERSION}. "
            "Re-run `python -m data_tools pack` with this version to rebuild the shards."
        )
    manifest = Manifest.from_dict(d)
    bad = [sh.name for split in manifest.splits.values() for sh in split.shards if not _inside(sh.name)]
    if bad:
        raise ShardFormatError(
            f"{path}: shard names must be plain relative paths inside the dataset (like train/shard-00000.tar); "
            f"refusing {bad[:5]}, which would read outside {root}. Re-pack, or fix the manifest by hand.")
    return manifest


def _inside(name: str) -> bool:
    """A relative name with no '..', no absolute or drive part, no backslash: it stays inside the dataset."""
    p = PurePosixPath(name)
    return bool(name) and "\\" not in name and not p.is_absolute() and ".." not in p.parts and ":" not in p.parts[0]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def encode_sample(key: str, ids: np.ndarray, word_starts: np.ndarray | None) -> dict:
    """A dict for ``webdataset.TarWriter.write``; ids [n, L], word_starts bool [n, L] or None."""
    sample = {"__key__": key, IDS_MEMBER: _npy_bytes(np.ascontiguousarray(ids))}
    if word_starts is not None:
        sample[WWM_MEMBER] = _npy_bytes(np.packbits(word_starts.astype(bool), axis=1))
    return sample


def decode_sample(sample: dict, max_seq_length: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of encode_sample for raw (undecoded) WebDataset samples: (ids [n, L], word_starts bool [n, L] | None)."""
    ids = _load_npy(sample[IDS_MEMBER])
    ws = sample.get(WWM_MEMBER)
    if ws is not None:
        ws = np.unpackbits(_load_npy(ws), axis=1, count=max_seq_length).astype(bool)
    return ids, ws


def _load_npy(value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    return np.load(io.BytesIO(value), allow_pickle=False)
