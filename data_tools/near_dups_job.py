"""`data_tools near-dups`: one pass over the whole input, writing the near-duplicates every `pack --part I/N
--drop_list DIR` drops (data_tools.near_dedup has the method).

The pass sees the documents a pack sees, in the same order: normalised, empty ones and those the quality filters drop
left out, exact duplicates of a kept document left out; every other document is indexed or, when it nearly duplicates
one indexed before it, listed. Signatures are computed in --workers processes (the pack's ordered pool), the index in
this one. The list holds 8 bytes per dropped document (content hashes); the index about 2.2 KB per kept document.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from itertools import islice

import numpy as np
from rich.console import Console

from data_tools import tokenize_worker
from data_tools.config import NearDupsConfig
from data_tools.near_dedup import DROP_HASHES, DROP_INFO, NearDupIndex, near_dedup_settings
from data_tools.pool import OrderedPool
from data_tools.readers import ReadStats, check_input, read_documents
from roberta_ds.owned_dir import claim_dir
from roberta_ds.shard_format import source_stamp

EXAMPLES, EXAMPLE_CHARS = 3, 80


def run_near_dups(cfg: NearDupsConfig, console: Console | None = None) -> dict:
    console = console or Console(stderr=True)
    check_input(cfg.reader)
    claim_dir(cfg.output, "data_tools near-dups", {DROP_HASHES, DROP_INFO, DROP_INFO + ".tmp"}, flag="--output",
              what="a drop list")
    stats = ReadStats()
    index = NearDupIndex(cfg.near_dedup_threshold)
    kept: set[int] = set()
    drop: set[int] = set()
    counts: Counter[str] = Counter()
    examples: list[dict] = []
    texts_in_flight: deque[list[str]] = deque()

    def chunks():
        it = read_documents(cfg.reader, stats)
        while batch := [d.text for d in islice(it, cfg.chunk_docs)]:
            texts_in_flight.append(batch)
            yield batch

    t0 = time.perf_counter()
    n = 0
    init_args = (None, 0, "<u2", cfg.normalize, False, (1, 1), cfg.quality, True)
    with OrderedPool(cfg.workers, tokenize_worker.init_worker, init_args) as pool:
        for results in pool.map_ordered(chunks()):
            for r, text in zip(results, texts_in_flight.popleft(), strict=True):
                n += 1
                if r.dropped is not None:
                    counts["quality filters"] += 1
                elif r.signature is None:
                    counts["empty"] += 1
                elif r.hash in kept:
                    counts["exact duplicates"] += 1
                elif index.add(n - 1, r.signature):
                    kept.add(r.hash)
                else:
                    drop.add(r.hash)
                    counts["near-duplicates"] += 1
                    if len(examples) < EXAMPLES:
                        examples.append({"document": n - 1, "near_duplicate_of_document": index.similar_to(r.signature),
                                         "text": " ".join(text.split())[:EXAMPLE_CHARS]})
    seconds = time.perf_counter() - t0
    hashes = np.array(sorted(drop), dtype="<u8")
    hashes.tofile(cfg.output / DROP_HASHES)
    info = {
        "options": cfg.document_options(),
        "near_dedup": near_dedup_settings(cfg.near_dedup_threshold),
        "documents_read": n,
        "documents_indexed": len(kept),
        "documents_dropped": len(hashes),
        "drops": counts["near-duplicates"],
        "drops_note": "documents dropped, exact copies of a dropped document included; documents_dropped counts "
                      "distinct content hashes",
        "left_out": {k: counts[k] for k in ("empty", "quality filters", "exact duplicates")},
        "examples": examples,
        "seconds": round(seconds, 1),
        **source_stamp("data_tools near-dups"),
    }
    tmp = cfg.output / (DROP_INFO + ".tmp")
    tmp.write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(cfg.output / DROP_INFO)  # last: its presence means the list is complete
    console.print(f"near-dups: {n:,} documents read, {counts['near-duplicates']:,} near-duplicates "
                  f"(Jaccard >= {cfg.near_dedup_threshold}) of {len(kept):,} kept; left out: empty {counts['empty']:,}, "
                  f"quality filters {counts['quality filters']:,}, exact duplicates {counts['exact duplicates']:,}; "
                  f"{seconds:.1f} s ({n / max(seconds, 1e-9):,.0f} documents/s) -> {cfg.output}")
    return info
