"""The resumable pack job (`data_tools pack`): read -> normalise -> dedup -> split -> tokenize (pool)
-> pack into sequences -> shards -> manifest, with a checkpoint after every completed shard.

Where each step lives: data_tools.readers (read), data_tools.tokenize_worker (normalise, hash,
tokenize: what a pool worker runs), data_tools.sequence_packer (sequences), data_tools.shard_writer
(shards), data_tools.pack_state (the resume state), roberta_ds.shard_format (the manifest).

Dedup keeps an in-memory set of 8-byte blake2b hashes of the normalised documents, as Python ints:
that is what memory grows with. Measured (tracemalloc, CPython 3.11, 0.14-5 M random 64-bit
hashes): 63-70 bytes per kept document (a 36-byte int object plus 27-34 bytes of set table,
more right after the table doubles), i.e. 137 k YACND documents ≈ 9 MB, 10 M documents ≈ 0.7 GB.
Each split also keeps its hashes for documents.npy, 8-16 bytes a document (shard_writer.HashArray).
The validation split is decided per document by the same hash (hash / 2**64 < val_fraction): it is
independent of worker count and input order, and duplicates can never straddle the split.
With ``--part I/N`` the job keeps only the documents with hash % N == I - 1 (tokenize_worker.in_part; the others
are read and hashed, not tokenized, and counted as documents in other parts): duplicates share a part, so dedup
inside a part is dedup over the input, and the split is the same as in a single pack. data_tools.merge joins parts.
"""

from __future__ import annotations

import time
from collections import deque
from itertools import islice

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from data_tools import tokenize_worker
from data_tools.config import PackConfig
from data_tools.near_dedup import EXACT_COPIES, DropList, NearDupIndex, near_dedup_settings
from data_tools.normalize import CHAR_TABLE
from data_tools.pool import OrderedPool
from data_tools.pack_state import Checkpoints, Counters, prepare_output
from data_tools.readers import ReadStats, check_input, read_documents, share_documents
from data_tools.sequence_packer import Packer
from data_tools.shard_writer import SplitWriter
from roberta_ds.shard_format import (
    source_stamp,
    TOKENIZER_DIRNAME,
    Manifest,
    SplitInfo,
    ids_dtype,
    read_manifest,
    sequences_per_sample,
    unigram_line,
    write_manifest,
)
from roberta_ds.tokenizer import load_tokenizer, tokenizer_info

TOP_UNK = 20
FILTER_EXAMPLES, EXAMPLE_CHARS = 3, 80


def _filtered_text(c: Counters) -> str:
    return "".join(f", {n} dropped as {reason}" for reason, n in sorted(c.filtered.items()))


def _drop_list(cfg: PackConfig) -> DropList | None:
    if cfg.drop_list is None:
        return None
    dl = DropList.load(cfg.drop_list)
    if cfg.part_by == "files" and dl.copies is None:
        raise ValueError(f"--part_by files: --drop_list {cfg.drop_list} has no list of exact copies ({EXACT_COPIES}); "
                         "write it with `data_tools near-dups --executor local` (or slurm)")
    if conflicts := dl.conflicts(cfg.document_options()):
        raise ValueError(f"--drop_list {cfg.drop_list} was computed over other documents than this pack reads "
                         f"({'; '.join(conflicts)}); run `data_tools near-dups` again with this pack's input, "
                         "normalisation and filters")
    return dl


def run_pack(cfg: PackConfig, console: Console | None = None) -> Manifest | None:
    console = console or Console(stderr=True)
    check_input(cfg.reader)
    drop_list = _drop_list(cfg)  # before the tokenizer and before submitting anything: a wrong list fails at once
    if cfg.executor != "inline":  # N parts as datatrove tasks, then their merge (None: submitted to SLURM)
        from data_tools.dt_pack import run_pack_stages

        run_pack_stages(cfg, console)
        return read_manifest(cfg.output) if (cfg.output / "manifest.json").exists() else None
    tok = load_tokenizer(cfg.tokenizer_path)
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"--tokenizer_path {cfg.tokenizer_path}: need a fast (tokenizers-backed) tokenizer")
    info = tokenizer_info(tok, name=cfg.tokenizer_path)
    options = cfg.options()
    resume_options = {**options, "vocab_sha256": info.vocab_sha256}  # a resume must match all of these
    state = prepare_output(cfg.output, resume_options)
    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = out / TOKENIZER_DIRNAME
    tok.save_pretrained(str(tok_dir))
    dtype = ids_dtype(info.vocab_size)
    spp = sequences_per_sample(cfg.max_seq_length)
    split_names = ["train", "validation"] if cfg.val_fraction > 0 else ["train"]
    writers = {
        s: SplitWriter(
            out, s, Packer(cfg.max_seq_length, info.cls_id, info.sep_id, info.pad_id, dtype, cfg.wwm), spp, cfg.shard_size_mb,
            info.vocab_size,
        )
        for s in split_names
    }
    checkpoints = Checkpoints(out, resume_options)
    index = checkpoints.index = NearDupIndex(cfg.near_dedup_threshold) if cfg.near_dedup else None
    counters = Counters()
    consumed = 0
    if state is not None:
        consumed, counters = checkpoints.restore(state, writers)
        console.print(f"resuming {out}: {consumed} documents already consumed, "
                      f"{sum(len(w.shards) for w in writers.values())} shards complete")
    seen = {h for w in writers.values() for h in w.hashes.view().tolist()}  # Python ints, as DocResult.hash
    threshold = int(cfg.val_fraction * 2.0**64)
    part = cfg.partition() or (1, 1)
    by_files = cfg.part_by == "files"
    stats = ReadStats()
    init_args = (tokenize_worker.tokenizer_json_path(tok_dir), info.unk_id, dtype.str, cfg.normalize, cfg.wwm,
                 (1, 1) if by_files else part, cfg.quality, cfg.near_dedup)

    # per chunk in flight, in order (results come in order): categories, and the raw texts while filters are on
    chunk_meta: deque[tuple[list[str | None], list[str | None], list]] = deque()
    keep_texts = cfg.quality.active or cfg.near_dedup or drop_list is not None  # for the examples

    def documents():
        """(document, its place in the input) for --part_by files: this part's files only; else every document."""
        if by_files:
            return share_documents(cfg.reader, part[0] - 1, part[1], stats)
        return ((d, None) for d in read_documents(cfg.reader, stats))

    def chunks():
        it = islice(documents(), consumed, None)
        while batch := list(islice(it, cfg.chunk_docs)):
            chunk_meta.append(([d.meta.get("category") for d, _ in batch],
                               [d.text if keep_texts else None for d, _ in batch], [place for _, place in batch]))
            yield [d.text for d, _ in batch]

    t0 = time.perf_counter()
    start_consumed, start_tokens = consumed, counters.document_tokens
    progress = Progress(
        TextColumn("[bold]packing"), BarColumn(), TextColumn("{task.fields[docs]} docs ({task.fields[dps]} docs/s)"),
        TextColumn("{task.fields[toks]} tokens ({task.fields[tps]} tokens/s)"), TimeElapsedColumn(),
        console=console, transient=False,
    )
    with progress, OrderedPool(cfg.workers, tokenize_worker.init_worker, init_args) as pool:
        task = progress.add_task("pack", total=None, docs=0, dps=0, toks=0, tps=0)
        for results in pool.map_ordered(chunks()):
            categories, texts, places = chunk_meta.popleft()
            for r, category, text, place in zip(results, categories, texts, places, strict=True):
                consumed += 1
                if place is not None and drop_list.is_copy(*place):
                    counters.duplicates_dropped += 1  # an exact copy of a document read earlier, maybe in another part
                    continue
                if not by_files and not tokenize_worker.in_part(r.hash, part):
                    counters.documents_other_parts += 1
                    continue
                counters.normalization_replacements += r.replaced
                if r.dropped is not None:
                    counters.filtered[r.dropped] += 1
                    examples = counters.filter_examples.setdefault(r.dropped, [])
                    if len(examples) < FILTER_EXAMPLES:
                        examples.append(" ".join(text.split())[:EXAMPLE_CHARS])
                    continue
                if r.ids is None or len(r.ids) == 0:
                    counters.documents_empty += 1
                    continue
                if r.hash in seen:
                    counters.duplicates_dropped += 1
                    continue
                if drop_list is not None:
                    near = r.hash in drop_list
                else:
                    near = index is not None and not index.add(consumed - 1, r.signature)
                if near:
                    counters.near_duplicates_dropped += 1
                    if len(counters.near_duplicate_examples) < FILTER_EXAMPLES:
                        counters.near_duplicate_examples.append(
                            {"document": consumed - 1, **({"near_duplicate_of_document": index.similar_to(r.signature)}
                                                          if index is not None else {}),
                             "text": " ".join(text.split())[:EXAMPLE_CHARS]})
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
                    checkpoints.save(writers, consumed, counters)
            dt = max(time.perf_counter() - t0, 1e-9)
            progress.update(
                task, docs=consumed, toks=counters.document_tokens,
                dps=f"{(consumed - start_consumed) / dt:,.0f}", tps=f"{(counters.document_tokens - start_tokens) / dt:,.0f}",
            )

    if counters.documents_kept == 0:
        # before the manifest: an empty dataset would only fail later, in training, far from the cause
        c = stats.to_dict()
        near = f", {counters.near_duplicates_dropped} near-duplicates" if index is not None or drop_list is not None else ""
        others = f", {counters.documents_other_parts} in other parts than --part {options['part']}" if cfg.part else ""
        raise ValueError(
            f"no documents packed: --input {options['input']} ({cfg.reader.format}) gave "
            f"{c['documents_read']} documents: {counters.documents_empty} empty after normalisation, "
            f"{counters.duplicates_dropped} duplicates{near}{others}{_filtered_text(counters)}; files read {c['files_read']}, empty {c['empty_files']}, "
            f"binary skipped {c['binary_files_skipped']}; unreadable rows {c['unreadable_rows']}"
        )
    splits = {}
    for s, w in writers.items():
        w.finish()
        splits[s] = SplitInfo(documents=len(w.hashes), document_hashes=w.save_hashes(), shards=w.shards,
                              token_counts=w.save_token_counts())
    if "validation" not in splits:
        splits["validation"] = SplitInfo()
    corpus = _corpus_stats(stats, counters, cfg, drop_list)
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
            **source_stamp("data_tools pack"),
            **({"part": {"index": part[0], "of": part[1], **({"by": "files"} if by_files else {})}} if cfg.part else {}),
        },
    )
    write_manifest(out, manifest)  # last: its presence means the dataset is complete
    checkpoints.clear()
    print_summary(console, manifest)
    return manifest


def _corpus_stats(stats: ReadStats, c: Counters, cfg: PackConfig, drop_list: DropList | None) -> dict:
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
    if cfg.part:
        d["documents_other_parts"] = c.documents_other_parts
    if cfg.quality.active:
        d["quality_filters"] = {"settings": cfg.quality.settings(),
                                "dropped": {r: c.filtered[r] for r in cfg.quality.reasons},
                                "examples": {r: c.filter_examples.get(r, []) for r in cfg.quality.reasons},
                                "definitions": "data_tools/quality.py; examples: the first characters of the first "
                                               f"{FILTER_EXAMPLES} documents each filter dropped"}
    if cfg.near_dedup or drop_list is not None:
        d["near_dedup"] = {
            **(drop_list.info["near_dedup"] if drop_list is not None else near_dedup_settings(cfg.near_dedup_threshold)),
            "source": f"drop list {cfg.drop_list} (data_tools near-dups)" if cfg.drop_list else "inline (--near_dedup)",
            "dropped": c.near_duplicates_dropped, "examples": c.near_duplicate_examples,
            "examples_note": f"the first {FILTER_EXAMPLES} documents dropped: input number, the kept document it "
                             f"nearly duplicates (inline only), its first {EXAMPLE_CHARS} characters"}
    if stats.categories:
        d["categories"] = {cat: {"read": n, "kept": c.category_kept[cat]} for cat, n in sorted(stats.categories.items())}
    return d


def print_summary(console: Console, m: Manifest) -> None:
    c = m.corpus
    t = Table(title=f"{m.source.get('tool', 'data_tools pack')}: {m.source.get('format')} -> max_seq_length {m.max_seq_length}")
    t.add_column("what", style="bold")
    t.add_column("count", justify="right")
    rows = [
        ("documents read (from the reader)", c["documents_read"]),
        ("documents kept (packed)", c["documents_kept"]),
        ("documents dropped: empty after normalisation", c["documents_empty"]),
        ("documents dropped: exact duplicates", c["duplicates_dropped"]),
    ]
    if "near_dedup" in c:
        rows.append((f"documents dropped: near-duplicates (Jaccard >= {c['near_dedup']['threshold']})",
                     c["near_dedup"]["dropped"]))
    for reason, n in c.get("quality_filters", {}).get("dropped", {}).items():
        rows.append((f"documents dropped: quality filter, {reason}", n))
    if "part" in m.source:  # pack --part I/N
        p = m.source["part"]
        rows.append((f"documents in other parts (this is part {p['index']} of {p['of']})", c["documents_other_parts"]))
    rows += [
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
