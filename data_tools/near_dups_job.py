"""`data_tools near-dups`: one pass over the whole input, writing the near-duplicates every `pack --part I/N
--drop_list DIR` drops (data_tools.near_dedup has the method).

The pass sees the documents a pack sees, in the same order: normalised, empty ones and those the quality filters drop
left out, exact duplicates of a kept document left out; every other document is indexed or, when it nearly duplicates
one indexed before it, listed. Signatures are computed in --workers processes (the pack's ordered pool), the index in
this one. The list holds 8 bytes per dropped document (content hashes); the index 2-3 KB per kept document (docs/guide.md).

A killed pass resumes: every --checkpoint_docs documents it saves what it has (the kept and dropped hashes and the
kept signatures, in append-only files, and the counts) to DIR/.near_dups_state, and the same command continues from
there, to the same list as an uninterrupted pass (tests/test_near_dedup.py).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter, deque
from itertools import islice
from pathlib import Path

import numpy as np
from rich.console import Console

from data_tools import tokenize_worker
from data_tools.config import NearDupsConfig
from data_tools.near_dedup import DROP_HASHES, DROP_INFO, NearDupIndex, near_dedup_settings
from data_tools.pool import OrderedPool
from data_tools.quality import comparable
from data_tools.readers import ReadStats, check_input, read_documents
from roberta_ds.owned_dir import claim_dir
from roberta_ds.shard_format import source_stamp

EXAMPLES, EXAMPLE_CHARS = 3, 80


STATE = ".near_dups_state"


class _State:
    """The resume state of a near-dups pass in DIR/.near_dups_state: state.json (options, documents consumed, counts,
    examples and the length of each file) written after kept.u64 and drop.u64 (content hashes, appended) and
    index.bin (kept signatures, NearDupIndex.save); a resume reads exactly the lengths state.json names."""

    def __init__(self, root: Path, options: dict):
        self.dir, self.options = root / STATE, options
        self.saved = {"kept": 0, "drop": 0, "index_bytes": 0}

    def load(self) -> dict | None:
        path = self.dir / "state.json"
        if not path.exists():
            return None
        state = json.loads(path.read_text(encoding="utf-8"))
        old, now = comparable(state["options"]), comparable(self.options)  # a pass begun before a filter existed
        if old != now:
            diff = [f"{k}: {old.get(k)!r} before, {v!r} now" for k, v in now.items() if old.get(k) != v]
            raise ValueError(f"{self.dir.parent} holds an unfinished near-dups pass made with other options "
                             f"({'; '.join(diff)}); re-run the original command to finish it, or choose a new --output")
        self.saved = {k: state[k] for k in self.saved}
        return state

    def hashes(self, name: str) -> list[int]:
        return np.fromfile(self.dir / f"{name}.u64", dtype="<u8", count=self.saved[name]).tolist()

    def save(self, kept: list[int], drop: list[int], index: NearDupIndex, state: dict) -> None:
        self.dir.mkdir(exist_ok=True)
        for name, values in (("kept", kept), ("drop", drop)):
            path = self.dir / f"{name}.u64"
            with path.open("r+b" if path.exists() else "wb") as fh:
                fh.seek(self.saved[name] * 8)
                fh.truncate()
                fh.write(np.array(values[self.saved[name]:], dtype="<u8").tobytes())
            self.saved[name] = len(values)
        self.saved["index_bytes"] = index.save(self.dir / "index.bin", self.saved["index_bytes"])
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps({"options": self.options, **state, **self.saved}, ensure_ascii=False),
                       encoding="utf-8")
        tmp.replace(self.dir / "state.json")


def run_near_dups(cfg: NearDupsConfig, console: Console | None = None) -> dict | None:
    console = console or Console(stderr=True)
    check_input(cfg.reader)
    if cfg.executor != "inline":
        from data_tools.dt_near_dups import run_stages

        return run_stages(cfg, console)
    options = {**cfg.document_options(), "near_dedup_threshold": cfg.near_dedup_threshold}
    resume = _State(cfg.output, options)
    state = resume.load()
    claim_dir(cfg.output, "data_tools near-dups", {DROP_HASHES, DROP_INFO, DROP_INFO + ".tmp", STATE}, flag="--output",
              what="a drop list", clean=state is None)
    stats = ReadStats()
    index = NearDupIndex(cfg.near_dedup_threshold)
    kept_order: list[int] = []  # the kept and dropped hashes in the order found: the state files append them
    drop_order: list[int] = []
    counts: Counter[str] = Counter()
    examples: list[dict] = []
    n = 0
    if state is not None:
        kept_order, drop_order = resume.hashes("kept"), resume.hashes("drop")
        index.restore(resume.dir / "index.bin", resume.saved["index_bytes"])
        n, counts, examples = state["consumed"], Counter(state["counts"]), state["examples"]
        console.print(f"resuming {cfg.output}: {n:,} documents already read")
    kept, drop = set(kept_order), set(drop_order)
    texts_in_flight: deque[list[str]] = deque()

    def chunks():
        it = islice(read_documents(cfg.reader, stats), n, None)
        while batch := [d.text for d in islice(it, cfg.chunk_docs)]:
            texts_in_flight.append(batch)
            yield batch

    t0, start = time.perf_counter(), n
    next_save = n + cfg.checkpoint_docs
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
                    kept_order.append(r.hash)
                else:
                    if r.hash not in drop:
                        drop.add(r.hash)
                        drop_order.append(r.hash)
                    counts["near-duplicates"] += 1
                    if len(examples) < EXAMPLES:
                        examples.append({"document": n - 1, "near_duplicate_of_document": index.similar_to(r.signature),
                                         "text": " ".join(text.split())[:EXAMPLE_CHARS]})
            if n >= next_save:
                resume.save(kept_order, drop_order, index, {"consumed": n, "counts": dict(counts), "examples": examples})
                next_save = n + cfg.checkpoint_docs
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
        "seconds_last_run": round(seconds, 1),
        **source_stamp("data_tools near-dups"),
    }
    tmp = cfg.output / (DROP_INFO + ".tmp")
    tmp.write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(cfg.output / DROP_INFO)  # last: its presence means the list is complete
    shutil.rmtree(resume.dir, ignore_errors=True)
    console.print(f"near-dups: {n:,} documents read, {counts['near-duplicates']:,} near-duplicates "
                  f"(Jaccard >= {cfg.near_dedup_threshold}) of {len(kept):,} kept; left out: empty {counts['empty']:,}, "
                  f"quality filters {counts['quality filters']:,}, exact duplicates {counts['exact duplicates']:,}; "
                  f"{seconds:.1f} s ({(n - start) / max(seconds, 1e-9):,.0f} documents/s) -> {cfg.output}")
    return info
