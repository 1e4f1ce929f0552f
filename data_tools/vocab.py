"""`data_tools build-vocab`: train a BERT-style Chinese WordPiece vocab on a corpus.

Same readers and normalisation as pack, so the vocab sees exactly the text that will be packed.
Special tokens come first: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4 (the standard hfl vocab
has [PAD]=0, [UNK]=100 ... because of its [unused] block; ids are read from the manifest, never
assumed). CJK characters are split one per token and text is lowercased, as in Chinese BERT.
"""

from __future__ import annotations

import heapq
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from rich.console import Console

from data_tools.config import PackConfig, VocabConfig
from data_tools.normalize import normalize
from data_tools.readers import ReadStats, check_input, read_documents
from data_tools.tokenize_worker import doc_hash
from data_tools.vocab_worker import bert_wordpiece, close_spool, count_chunk, init_vocab_worker
from roberta_ds.tokenizer import SPECIAL_TOKENS, TokenizerError, load_tokenizer


def pinned_alphabet(counts: Counter[str], inner: set[str], vocab_size: int) -> tuple[list[str], list[str]]:
    """The characters the vocab keeps and the ``##c`` continuation tokens, both chosen and ordered here.

    Why: the ``tokenizers`` BPE trainer behind WordPiece is not deterministic: it cuts the alphabet to
    ``limit_alphabet`` by frequency with ties in hash-map order, creates the ``##c`` continuation tokens
    in hash-map order, and breaks ties between merges of equal count by those ids. Two runs on the same
    corpus gave vocabularies of 19,885 and 19,889 tokens (huggingface/tokenizers#1794, fixed upstream
    only by an open PR). Here the alphabet is the ``vocab_size`` most frequent characters (ties by
    code point) and the continuation tokens are ``##c`` for each of them seen inside a word, sorted;
    handed to the trainer as its initial alphabet and as leading tokens, they get fixed ids and the
    training is byte-identical from run to run. They are the tokens the trainer would have made itself.
    """
    alphabet = sorted(sorted(counts, key=lambda c: (-counts[c], c))[:vocab_size])
    keep = set(alphabet)
    return alphabet, ["##" + c for c in sorted(inner & keep)]


def sample_threshold(texts: Iterable[str], n: int) -> int:
    """The --sample_docs cut: the n-th smallest content hash (tokenize_worker.doc_hash, as pack's split and parts
    use) of the documents; those at or below it are the sample. Uniform over the corpus and deterministic (the same
    documents for the same corpus in any order), in one streaming pass that keeps n 8-byte hashes."""
    heap: list[int] = []  # the n smallest hashes so far, negated: heap[0] is minus the largest of them
    for text in texts:
        h = doc_hash(text)
        if len(heap) < n:
            heapq.heappush(heap, -h)
        elif h < -heap[0]:
            heapq.heapreplace(heap, -h)
    return -heap[0] if len(heap) == n else 2**64


def build_vocab(cfg: VocabConfig, console: Console | None = None) -> Path:
    """One streaming pass over the corpus (two with --sample_docs): --workers processes read chunks in order,
    normalise them, count characters and spool the normalised text to local temporary files; the tokenizers
    trainer (Rust, multi-threaded) then reads those files. Character counts are sums and the trainer's word counts
    are too, so the vocab is byte-identical for any --workers (tests/test_data_tools.py)."""
    from transformers import BertTokenizerFast

    from data_tools.pool import OrderedPool

    console = console or Console(stderr=True)
    check_input(cfg.reader)
    stats = ReadStats()

    def all_texts() -> Iterator[str]:
        for doc in read_documents(cfg.reader, stats):
            text, _ = normalize(doc.text, cfg.normalize)
            if text:
                yield text

    threshold = sample_threshold(all_texts(), cfg.sample_docs) if cfg.sample_docs else None
    stats = ReadStats()  # the counting pass reads the corpus again: count that one

    def chunks() -> Iterator[list[str]]:
        it = read_documents(cfg.reader, stats)
        while batch := [d.text for d in islice(it, PackConfig.chunk_docs)]:  # pack's default chunk size
            yield batch

    counts: Counter[str] = Counter()
    inner: set[str] = set()
    used = 0
    spool = tempfile.TemporaryDirectory(prefix="build-vocab-")
    with spool, OrderedPool(cfg.workers, init_vocab_worker, (cfg.normalize, threshold, spool.name)) as pool:
        for c, i, n in pool.map_ordered(chunks(), count_chunk):
            counts.update(c)
            inner |= i
            used += n
        close_spool()  # --workers 1 counted in this process
        files = sorted(str(f) for f in Path(spool.name).glob("texts-*.txt"))
        wp = bert_wordpiece()
        alphabet, continuations = pinned_alphabet(counts, inner, cfg.vocab_size)
        wp.train(
            files,
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            # every character seen (up to vocab_size) becomes an id: Chinese needs thousands, the default (1000)
            # would [UNK] the rest; the set is chosen in pinned_alphabet, where ties are broken deterministically
            initial_alphabet=alphabet,
            limit_alphabet=len(alphabet),
            special_tokens=[*SPECIAL_TOKENS, *continuations],
            wordpieces_prefix="##",
            show_progress=False,
        )
    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wp.save_model(tmp)
        # through from_pretrained: BertTokenizerFast(vocab_file=...) silently builds a 5-token
        # tokenizer in transformers 5.x (docs/design.md, "Tokenizer").
        tok = BertTokenizerFast.from_pretrained(tmp, do_lower_case=True, tokenize_chinese_chars=True)
        expected = sum(1 for line in (Path(tmp) / "vocab.txt").open(encoding="utf-8") if line.strip())
        tok.save_pretrained(str(out))
        # transformers 5.x save_pretrained writes tokenizer.json only; keep vocab.txt for BERT-era tools
        shutil.copy(Path(tmp) / "vocab.txt", out / "vocab.txt")
    loaded = load_tokenizer(out)
    if len(loaded) != expected:
        raise TokenizerError(f"{out}: saved {expected} tokens but load_tokenizer finds {len(loaded)}")
    sampled = "" if threshold is None else f", of which {used:,} sampled (--sample_docs, by content hash)"
    console.print(
        f"build-vocab: {len(loaded):,} tokens from {stats.documents_read:,} documents{sampled} "
        f"(files by encoding {dict(stats.encodings)}, unreadable rows {dict(stats.unreadable_rows)}) -> {out}"
    )
    return out
