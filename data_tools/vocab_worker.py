"""What a build-vocab pool worker runs: normalise chunks of raw texts, count their characters, spool them for the
trainer. Imports only tokenizers and data_tools' light modules: workers are spawned, and transformers would cost
seconds each."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from data_tools.normalize import normalize
from data_tools.tokenize_worker import doc_hash

_RUN = re.compile(r"\S{2,}")
"""Two or more characters without whitespace: after the BERT normalizer puts spaces around every CJK character,
the only places where a character can follow another inside a word."""


def character_counts(texts: Iterable[str], wp) -> tuple[Counter[str], set[str]]:
    """How often each character occurs in the words the trainer will see, and which characters occur inside a word
    (not first), in one streaming pass. The counts are per distinct character (thousands of entries, whatever the
    corpus size), counted in C (``Counter.update`` on a string): the words of BERT's pre-tokenizer are the
    normalized text's non-whitespace characters, so nothing is pre-tokenized except runs of 2+ non-space
    characters (numbers, Latin words, punctuation clusters), where the pre-tokenizer decides what is inside a word."""
    norm, pre = wp.normalizer, wp.pre_tokenizer
    counts: Counter[str] = Counter()
    inner: set[str] = set()
    for text in texts:
        s = norm.normalize_str(text)
        counts.update(s)
        for run in _RUN.findall(s):
            if inner.issuperset(run[1:]):  # a word's characters after its first are among the run's after its first
                continue
            for word, _ in pre.pre_tokenize_str(run):
                if len(word) > 1:
                    inner.update(word[1:])
    for ch in [c for c in counts if c.isspace()]:
        del counts[ch]
    return counts, inner


_VOCAB_WORKER: dict = {}


def bert_wordpiece():
    from tokenizers import BertWordPieceTokenizer

    return BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)


def init_vocab_worker(table: bool, threshold: int | None, spool_dir: str) -> None:
    """A build-vocab worker: normalises its chunks, counts their characters and appends the texts to its own spool
    file (one per process) for the trainer."""
    _VOCAB_WORKER.update(table=table, threshold=threshold, wp=bert_wordpiece(),
                         spool=open(Path(spool_dir) / f"texts-{os.getpid()}.txt", "a", encoding="utf-8"))


def count_chunk(raw: list[str]) -> tuple[Counter[str], set[str], int]:
    """(character counts, characters inside words, documents used) of one chunk; its texts go to the spool file."""
    w = _VOCAB_WORKER
    texts = []
    for r in raw:
        t, _ = normalize(r, w["table"])
        if t and (w["threshold"] is None or doc_hash(t) <= w["threshold"]):
            texts.append(t)
    if texts:
        w["spool"].write("\n".join(texts) + "\n")
        w["spool"].flush()  # complete before the result returns: the pool terminates its workers at the end
    counts, inner = character_counts(texts, w["wp"])
    return counts, inner, len(texts)


def close_spool() -> None:
    if (fh := _VOCAB_WORKER.pop("spool", None)) is not None:
        fh.close()
