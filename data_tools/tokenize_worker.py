"""What a pack pool worker runs: normalise, hash and tokenize chunks of raw document texts.

Workers get ordered chunks of raw document texts and return, per document, its normalised
content hash, the token ids (no [CLS]/[SEP] of the tokenizer's own: ``add_special_tokens=False``),
optional whole-word-masking flags and the characters that became [UNK]. The main process
(data_tools.pack_job) dedups, splits and packs them into sequences (data_tools.sequence_packer) in
input order, so the output does not depend on the number of workers.

This module imports only numpy, tokenizers, (with --wwm) jieba and (with --near_dedup) rensa: workers are spawned, and
importing transformers there would cost seconds per worker.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from data_tools import near_dedup
from data_tools.normalize import normalize
from data_tools.quality import QualityFilters

if TYPE_CHECKING:
    from tokenizers import Tokenizer

_WORKER: dict = {}


@dataclass
class DocResult:
    hash: int
    """blake2b-8 of the normalised text (uint64; 0 for an empty one): dedup key, split key, part key
    and documents.npy entry."""
    replaced: int
    """Characters the normalisation table replaced."""
    ids: np.ndarray | None
    """Token ids (None for an empty document, and for a document of another part: not tokenized)."""
    word_starts: np.ndarray | None
    """bool per token: starts a jieba word (only with --wwm)."""
    unk_chars: dict[str, int] | None
    dropped: str | None = None
    """The reason of the filter that dropped the document (data_tools.steps; then not tokenized)."""
    signature: bytes | None = None
    """Its MinHash signature (data_tools.near_dedup), with near-duplicate removal on, for a document of this part that
    passed the filters."""


def doc_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def corpus_tokenizer(tokenizer_json: str) -> Tokenizer:
    """The backend tokenizer for corpus text: literal "[PAD]", "[SEP]", "[CLS]", "[MASK]" in a document
    are ordinary text ('[', 'pad', ']'), never the special ids. tokenizers matches added special tokens
    in raw text even with add_special_tokens=False; a literal "[SEP]" would then split a document,
    a "[PAD]" would be counted (and masked from attention) as padding."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    tok.encode_special_tokens = True
    return tok


def init_worker(tokenizer_json: str | None, unk_id: int, dtype: str, table: bool, wwm: bool,
                part: tuple[int, int] = (1, 1), quality: QualityFilters = QualityFilters(),
                near_dedup: bool = False) -> None:
    """``part``: (I, N) of ``pack --part I/N``; documents of other parts are hashed, not tokenized. Documents that
    fail a ``quality`` filter are hashed, not tokenized. ``near_dedup``: also sign the others (near_dedup.signature).
    Without a tokenizer (``data_tools near-dups``) nothing is tokenized."""
    _WORKER.update(
        tok=corpus_tokenizer(tokenizer_json) if tokenizer_json else None, unk_id=unk_id, dtype=np.dtype(dtype),
        table=table, wwm=wwm, part=part, quality=quality, near_dedup=near_dedup,
    )
    if wwm:
        import jieba

        jieba.setLogLevel(60)  # jieba logs its dictionary loading at INFO on stderr
        jieba.initialize()


def in_part(doc_hash: int, part: tuple[int, int]) -> bool:
    """Whether a document with this content hash belongs to part I of N (``pack --part I/N``): hash % N == I - 1.
    An empty document (hash 0) belongs to part 1, so each part's counts add up to the whole input's."""
    i, n = part
    return doc_hash % n == i - 1


def process_chunk(texts: list[str]) -> list[DocResult]:
    """Per text: its DocResult; ids None for an empty document and for one of another part (``in_part``)."""
    w = _WORKER
    normed = [normalize(t, w["table"]) for t in texts]
    hashes = [doc_hash(t) if t else 0 for t, _ in normed]
    mine = [bool(t) and in_part(h, w["part"]) for (t, _), h in zip(normed, hashes)]
    quality = w.get("quality")
    dropped = [quality.verdict(raw, t) if m and quality is not None and quality.active else None
               for raw, (t, _), m in zip(texts, normed, mine)]
    todo = [t for (t, _), m, d in zip(normed, mine, dropped) if m and d is None]
    encs = iter(w["tok"].encode_batch(todo, add_special_tokens=False) if todo and w["tok"] else [])
    out = []
    for (text, replaced), h, m, d in zip(normed, hashes, mine, dropped):
        if not m or d is not None:
            out.append(DocResult(h, replaced, None, None, None, d))
            continue
        sig = near_dedup.signature(text) if w["near_dedup"] else None
        if w["tok"] is None:
            out.append(DocResult(h, replaced, None, None, None, signature=sig))
            continue
        enc = next(encs)
        ids = np.asarray(enc.ids, dtype=w["dtype"])
        unk = None
        unk_pos = np.flatnonzero(ids == w["unk_id"])
        if unk_pos.size:
            offsets = enc.offsets
            unk = Counter(text[offsets[i][0] : offsets[i][1]] for i in unk_pos)
        flags = word_start_flags(text, enc.tokens, enc.offsets) if w["wwm"] else None
        out.append(DocResult(h, replaced, ids, flags, dict(unk) if unk else None, signature=sig))
    return out


def word_start_flags(text: str, tokens: list[str], offsets: list[tuple[int, int]]) -> np.ndarray:
    """True where a token starts a jieba word.

    A token whose start offset is inside a jieba word (not at its first character) is False, and so
    is every WordPiece continuation piece ('##x'). Special tokens added by the packer ([CLS], [SEP],
    [PAD]) get True: masking them is prevented by the masker, not by these flags.
    """
    import jieba

    starts = set()
    pos = 0
    for word in jieba.lcut(text):
        starts.add(pos)
        pos += len(word)
    return np.fromiter(
        (off[0] in starts and not tok.startswith("##") for tok, off in zip(tokens, offsets)),
        dtype=bool,
        count=len(tokens),
    )


def tokenizer_json_path(tok_dir: Path) -> str:
    return str(Path(tok_dir) / "tokenizer.json")
