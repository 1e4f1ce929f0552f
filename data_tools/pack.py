"""`data_tools pack`: read -> normalise -> dedup -> split -> tokenize (pool) -> pack -> shards -> manifest.

Dedup keeps an in-memory set of 8-byte blake2b hashes of the normalised documents, as Python ints:
that is what memory grows with. Measured (tracemalloc, CPython 3.11, 0.14-5 M random 64-bit
hashes): 63-70 bytes per kept document (a 36-byte int object plus 27-34 bytes of set table,
more right after the table doubles), i.e. 137 k YACND documents ≈ 9 MB, 10 M documents ≈ 0.7 GB.
Each split also keeps its hashes for documents.npy, 8-16 bytes a document (writer.HashArray).
The validation split is decided per document by the same hash (hash / 2**64 < val_fraction): it is
independent of worker count and input order, and duplicates can never straddle the split.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import roberta_ds
from data_tools import packing, writer
from data_tools.normalize import CHAR_TABLE
from data_tools.packing import Packer
from data_tools.readers import ReaderConfig, ReadStats, check_input, read_documents
from roberta_ds.shard_format import (
    SPLITS,
    TOKENIZER_DIRNAME,
    Manifest,
    SplitInfo,
    ids_dtype,
    sequences_per_sample,
    sha256_file,
    write_manifest,
    MANIFEST_NAME,
    unigram_line,
)
from roberta_ds.tokenizer import load_tokenizer, tokenizer_info

KILL_HOOK_ENV = "DATA_TOOLS_TEST_KILL_AFTER_CHECKPOINTS"
"""Test hook: raise SimulatedKill right after this many checkpoints (simulates a kill mid-run)."""
TOP_UNK = 20


class SimulatedKill(RuntimeError):
    pass


@dataclass
class PackConfig:
    reader: ReaderConfig
    """Where and how to read the corpus."""
    output: Path
    """Dataset directory (--output)."""
    tokenizer_path: str
    """Hub id, tokenizer directory or vocab.txt (--tokenizer_path)."""
    max_seq_length: int = 512
    """Tokens per packed sequence, [CLS] included (--max_seq_length)."""
    val_fraction: float = 0.01
    """Fraction of documents (by content hash) for validation; 0 = no validation split (--val_fraction)."""
    workers: int = 1
    """Tokenizer processes; output is byte-identical for any value (--workers)."""
    wwm: bool = False
    """Store jieba word-start flags per token (--wwm)."""
    shard_size_mb: float = 64.0
    """Target shard size in MiB (--shard_size_mb)."""
    normalize: bool = True
    """Apply the normalize.CHAR_TABLE character mapping (off: --no_normalize)."""
    chunk_docs: int = 64
    """Documents per pool task (--chunk_docs): bigger amortises IPC, smaller evens out the load."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_seq_length < 8:
            problems.append(f"--max_seq_length {self.max_seq_length}: must be >= 8 (512 is the default)")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"--val_fraction {self.val_fraction}: must be in [0, 1), e.g. 0.01")
        if self.workers < 1:
            problems.append(f"--workers {self.workers}: must be >= 1")
        if self.shard_size_mb <= 0:
            problems.append(f"--shard_size_mb {self.shard_size_mb}: must be > 0, e.g. 64")
        if self.chunk_docs < 1:
            problems.append(f"--chunk_docs {self.chunk_docs}: must be >= 1")
        if self.reader.max_files_per_category is not None and self.reader.max_files_per_category < 1:
            problems.append(f"--max_files_per_category {self.reader.max_files_per_category}: must be >= 1")
        if self.reader.doc_sep not in ("line", "blank"):
            problems.append(f"--doc_sep {self.reader.doc_sep!r}: must be 'line' or 'blank'")
        if problems:
            raise ValueError("invalid pack options:\n  " + "\n  ".join(problems))

    def options(self) -> dict:
        """Every option that shapes the output (not --workers, which does not)."""
        r = self.reader
        return {
            "format": r.format,
            "input": None if r.input is None else str(Path(r.input).resolve()),
            "text_field": list(r.text_field),
            "doc_sep": r.doc_sep,
            "categories": list(r.categories),
            "inews_splits": list(r.inews_splits) if r.format == "inews" else None,
            "max_files_per_category": r.max_files_per_category,
            "tokenizer_path": self.tokenizer_path,
            "max_seq_length": self.max_seq_length,
            "val_fraction": self.val_fraction,
            "wwm": self.wwm,
            "shard_size_mb": self.shard_size_mb,
            "normalize": self.normalize,
        }


@dataclass
class Counters:
    """Processing counts (the reader keeps its own in ReadStats)."""

    documents_empty: int = 0
    duplicates_dropped: int = 0
    documents_kept: int = 0
    document_tokens: int = 0
    unk_tokens: int = 0
    normalization_replacements: int = 0
    unk_chars: Counter = field(default_factory=Counter)
    category_kept: Counter = field(default_factory=Counter)
    """thucnews: documents kept (packed) per category."""

    _COUNTERS = ("unk_chars", "category_kept")

    def to_state(self) -> dict:
        return {k: dict(v) if k in self._COUNTERS else v for k, v in vars(self).items()}

    @classmethod
    def from_state(cls, d: dict) -> "Counters":
        return cls(**{k: Counter(v) if k in cls._COUNTERS else v for k, v in d.items()})


def _prepare_output(cfg: PackConfig, options: dict, vocab_sha: str) -> dict | None:
    """Return the resume state, or None for a fresh start; refuse anything ambiguous."""
    out = cfg.output
    state = writer.load_state(out) if out.exists() else None
    if state is not None:
        old = state["options"]
        diff = [
            f"--{k}: {old.get(k)!r} before, {v!r} now"
            for k, v in {**options, "vocab_sha256": vocab_sha}.items()
            if old.get(k) != v
        ]
        if diff:
            raise ValueError(
                f"{out} holds an unfinished pack made with different options ({'; '.join(diff)}). "
                "Re-run the original command to finish it, or choose a new --output."
            )
        return state
    if out.exists():
        if (out / MANIFEST_NAME).exists():
            raise ValueError(f"{out} already holds a finished dataset (manifest.json); choose a new --output or delete it.")
        ours = {"train", "validation", TOKENIZER_DIRNAME, writer.STATE_DIRNAME}
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ours)
        if foreign:
            raise ValueError(f"--output {out} is not empty and not a data_tools dataset (it holds {foreign[:10]}).")
        for split in SPLITS:  # leftovers of a run killed before its first checkpoint
            if (out / split).exists():
                shutil.rmtree(out / split)
    return None


def run_pack(cfg: PackConfig, console: Console | None = None) -> Manifest:
    console = console or Console(stderr=True)
    check_input(cfg.reader)
    tok = load_tokenizer(cfg.tokenizer_path)
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"--tokenizer_path {cfg.tokenizer_path}: need a fast (tokenizers-backed) tokenizer")
    info = tokenizer_info(tok, name=cfg.tokenizer_path)
    options = cfg.options()
    state = _prepare_output(cfg, options, info.vocab_sha256)
    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = out / TOKENIZER_DIRNAME
    tok.save_pretrained(str(tok_dir))
    dtype = ids_dtype(info.vocab_size)
    spp = sequences_per_sample(cfg.max_seq_length)
    split_names = ["train", "validation"] if cfg.val_fraction > 0 else ["train"]
    writers = {
        s: writer.SplitWriter(
            out, s, Packer(cfg.max_seq_length, info.cls_id, info.sep_id, info.pad_id, dtype, cfg.wwm), spp, cfg.shard_size_mb,
            info.vocab_size,
        )
        for s in split_names
    }
    counters = Counters()
    consumed = 0
    gen = 0
    if state is not None:
        consumed, gen = state["documents_consumed"], state["generation"]
        counters = Counters.from_state(state["counters"])
        for s, w in writers.items():
            sstate = state["splits"][s]
            for sh in sstate["shards"]:
                p = out / sh["name"]
                if not p.exists() or sha256_file(p) != sh["sha256"]:
                    raise ValueError(
                        f"{p}: completed shard is missing or changed since the last checkpoint; "
                        f"delete {out} and pack again."
                    )
            w.restore(sstate["shards"], writer.load_state_arrays(out, sstate["arrays"]),
                      writer.load_state_hashes(out, sstate["hashes"], sstate["hash_count"]))
        console.print(f"resuming {out}: {consumed} documents already consumed, "
                      f"{sum(len(w.shards) for w in writers.values())} shards complete")
    seen = {h for w in writers.values() for h in w.hashes.view().tolist()}  # Python ints, as DocResult.hash
    options_state = {**options, "vocab_sha256": info.vocab_sha256}
    kill_after = int(os.environ.get(KILL_HOOK_ENV, "0") or 0)
    checkpoints = 0
    threshold = int(cfg.val_fraction * 2.0**64)
    stats = ReadStats()
    init_args = (packing.tokenizer_json_path(tok_dir), info.unk_id, dtype.str, cfg.normalize, cfg.wwm)

    chunk_categories: deque[list[str | None]] = deque()  # per chunk in flight, in order: results come in order

    def chunks():
        it = islice(read_documents(cfg.reader, stats), consumed, None)
        while batch := list(islice(it, cfg.chunk_docs)):
            chunk_categories.append([d.meta.get("category") for d in batch])
            yield [d.text for d in batch]

    t0 = time.perf_counter()
    start_consumed, start_tokens = consumed, counters.document_tokens
    progress = Progress(
        TextColumn("[bold]packing"), BarColumn(), TextColumn("{task.fields[docs]} docs ({task.fields[dps]} docs/s)"),
        TextColumn("{task.fields[toks]} tokens ({task.fields[tps]} tokens/s)"), TimeElapsedColumn(),
        console=console, transient=False,
    )
    with progress, _Pool(cfg.workers, init_args) as pool:
        task = progress.add_task("pack", total=None, docs=0, dps=0, toks=0, tps=0)
        for results in pool.map_ordered(chunks()):
            for r, category in zip(results, chunk_categories.popleft(), strict=True):
                consumed += 1
                counters.normalization_replacements += r.replaced
                if r.ids is None or len(r.ids) == 0:
                    counters.documents_empty += 1
                    continue
                if r.hash in seen:
                    counters.duplicates_dropped += 1
                    continue
                seen.add(r.hash)
                counters.documents_kept += 1
                if category is not None:
                    counters.category_kept[category] += 1
                counters.document_tokens += len(r.ids)
                if r.unk_chars:
                    counters.unk_tokens += sum(r.unk_chars.values())
                    counters.unk_chars.update(r.unk_chars)
                split = "validation" if r.hash < threshold else "train"
                if writers[split].add_document(r.hash, r.ids, r.word_starts):
                    gen += 1
                    writer.save_state(out, gen, writers, consumed, options_state, counters.to_state())
                    checkpoints += 1
                    if kill_after and checkpoints >= kill_after:
                        raise SimulatedKill(f"{KILL_HOOK_ENV}={kill_after}: stopped after {checkpoints} checkpoints")
            dt = max(time.perf_counter() - t0, 1e-9)
            progress.update(
                task, docs=consumed, toks=counters.document_tokens,
                dps=f"{(consumed - start_consumed) / dt:,.0f}", tps=f"{(counters.document_tokens - start_tokens) / dt:,.0f}",
            )

    if counters.documents_kept == 0:
        # before the manifest: an empty dataset would only fail later, in training, far from the cause
        c = stats.to_dict()
        raise ValueError(
            f"no documents packed: --input {options['input']} ({cfg.reader.format}) gave "
            f"{c['documents_read']} documents: {counters.documents_empty} empty after normalisation, "
            f"{counters.duplicates_dropped} duplicates; files read {c['files_read']}, empty {c['empty_files']}, "
            f"binary skipped {c['binary_files_skipped']}; unreadable rows {c['unreadable_rows']}"
        )
    splits = {}
    for s, w in writers.items():
        w.finish()
        splits[s] = SplitInfo(documents=len(w.hashes), document_hashes=w.save_hashes(), shards=w.shards,
                              token_counts=w.save_token_counts())
    if "validation" not in splits:
        splits["validation"] = SplitInfo()
    corpus = _corpus_stats(stats, counters, cfg)
    if "validation" in writers:
        corpus["unigram"] = unigram_line(writers["train"].token_counts, writers["validation"].token_counts, info)
    manifest = Manifest(
        tokenizer=info,
        max_seq_length=cfg.max_seq_length,
        wwm=cfg.wwm,
        dtype=dtype.name,
        sequences_per_sample=spp,
        splits=splits,
        corpus=corpus,
        source={
            "format": cfg.reader.format,
            "input": options["input"],
            "options": {**options, "workers": cfg.workers, "chunk_docs": cfg.chunk_docs},
            "tool": "data_tools pack",
            "roberta_ds_version": roberta_ds.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    write_manifest(out, manifest)  # last: its presence means the dataset is complete
    writer.clear_state(out)
    print_summary(console, manifest)
    return manifest


def _corpus_stats(stats: ReadStats, c: Counters, cfg: PackConfig) -> dict:
    d = stats.to_dict()
    d.update(
        documents_empty=c.documents_empty,
        duplicates_dropped=c.duplicates_dropped,
        documents_kept=c.documents_kept,
        truncated_documents=0,
        truncation_note="never truncated: a long document continues in the next sequence",
        dedup="exact, on normalised whitespace-collapsed text (in-memory set of 8-byte blake2b hashes)",
        document_tokens=c.document_tokens,
        unk_tokens=c.unk_tokens,
        unk_rate=c.unk_tokens / c.document_tokens if c.document_tokens else 0.0,
        unk_rate_note="[UNK] tokens / document tokens (packer's [CLS]/[SEP]/[PAD] excluded)",
        top_unk_chars=[[ch, n] for ch, n in sorted(c.unk_chars.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_UNK]],
        normalization={"enabled": cfg.normalize, "replacements": c.normalization_replacements, "table": CHAR_TABLE},
    )
    if stats.categories:
        d["categories"] = {cat: {"read": n, "kept": c.category_kept[cat]} for cat, n in sorted(stats.categories.items())}
    return d


def print_summary(console: Console, m: Manifest) -> None:
    c = m.corpus
    t = Table(title=f"data_tools pack: {m.source.get('format')} -> max_seq_length {m.max_seq_length}")
    t.add_column("what", style="bold")
    t.add_column("count", justify="right")
    rows = [
        ("documents read (from the reader)", c["documents_read"]),
        ("documents kept (packed)", c["documents_kept"]),
        ("documents dropped: empty after normalisation", c["documents_empty"]),
        ("documents dropped: exact duplicates", c["duplicates_dropped"]),
        ("documents truncated", c["truncated_documents"]),
        ("rows unreadable (skipped, by reason)", f"{c['unreadable_rows_total']} {c['unreadable_rows']}"),
        ("files: read / empty / binary skipped", f"{c['files_read']} / {c['empty_files']} / {c['binary_files_skipped']}"),
        ("files by encoding", str(c["encodings"])),
        ("lines/files with undecodable bytes (replaced)", c["decode_errors"]),
        ("characters replaced by normalisation", c["normalization"]["replacements"]),
        ("document tokens", f"{c['document_tokens']:,}"),
        ("[UNK] tokens (rate of document tokens)", f"{c['unk_tokens']:,} ({c['unk_rate']:.4%})"),
        ("top [UNK] characters", " ".join(f"{ch}:{n}" for ch, n in c["top_unk_chars"][:10]) or "-"),
    ]
    for cat, n in c.get("categories", {}).items():  # thucnews only
        rows.append((f"category {cat}: documents read / kept", f"{n['read']:,} / {n['kept']:,}"))
    total_bytes = 0
    total_tokens = 0
    for name, s in m.splits.items():
        b = sum(sh.bytes for sh in s.shards)
        total_bytes += b
        total_tokens += s.tokens + s.padding_tokens
        rows.append((f"{name}: documents / sequences / shards", f"{s.documents:,} / {s.sequences:,} / {len(s.shards)}"))
        rows.append((f"{name}: tokens (non-pad) / padding tokens", f"{s.tokens:,} / {s.padding_tokens:,}"))
    rows.append(("bytes on disk per token (tar incl.)", f"{total_bytes / max(total_tokens, 1):.3f}"))
    if m.unigram_nats is not None:
        rows.append(("unigram line: validation nats/token under train frequencies", f"{m.unigram_nats:.4f}"))
    for what, n in rows:
        t.add_row(what, str(n))
    console.print(t)
    for ex in c.get("problem_examples", []):
        console.print(f"  [yellow]problem[/]: {ex}")


class _Pool:
    """Ordered, bounded pool: at most 2 chunks per worker in flight, so memory stays flat
    (multiprocessing's imap would read the whole corpus ahead into its task queue).
    One worker runs in-process: no IPC, the same code path."""

    def __init__(self, workers: int, init_args: tuple):
        self.workers, self.init_args, self.pool = workers, init_args, None

    def __enter__(self) -> "_Pool":
        if self.workers > 1:
            # spawn, not fork: the parent may hold tokenizers/OpenMP threads that fork would copy mid-state.
            self.pool = mp.get_context("spawn").Pool(self.workers, packing.init_worker, self.init_args)
        else:
            packing.init_worker(*self.init_args)
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def map_ordered(self, chunks, fn=packing.process_chunk):
        if self.pool is None:
            for c in chunks:
                yield fn(c)
            return
        inflight: deque = deque()
        for c in chunks:
            inflight.append(self.pool.apply_async(fn, (c,)))
            if len(inflight) >= 2 * self.workers:
                yield inflight.popleft().get()
        while inflight:
            yield inflight.popleft().get()
