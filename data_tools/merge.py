"""`data_tools merge PART_DIR... --output DIR`: the parts of a pack made on several machines
(`data_tools pack --part I/N`) -> one dataset directory with one manifest.

Checked before anything is written, each problem naming the part directory and the fix: every directory
is a finished pack with a part entry; the parts are 1/N..N/N of one N, each once; one tokenizer identity
(roberta_ds.tokenizer.TokenizerInfo); the same packing settings (every pack option that shapes the output
but the input path, the tokenizer path and the shard size); no document in two parts (``--allow_duplicates``
merges anyway); and every shard re-hashed and re-counted against its part's manifest (data_tools.shard_check.verify).

Then: the shards are hard-linked (copied, and re-hashed, across filesystems) to ``SPLIT/partI-shard-NNNNN.tar``
(I zero-padded to the width of N), in part order; the tokenizer is copied from the first part; per split the
token counts are summed and the document hashes concatenated in part order; the processing counts are summed;
the reader's counts are taken once when they are the same in every part (each part read the whole input),
else summed; the unigram line is recomputed; manifest.json is written last.

Padding: every part pads its own last sequence of a split, so in a merged dataset the last shard of each part
in each split may end in one padded sequence (its ShardInfo.padding_tokens counts it; no other sequence holds
[PAD]), and a split holds up to N-1 more sequences, hence [CLS] tokens, than a single pack of the same input.
Documents, their tokens and [SEP]s, and the document hashes are those of the single pack.

A document's part is a function of its content hash (tokenize_worker.in_part), so parts with one N share no
document whatever their inputs: a duplicate across parts means a part was not made by `pack --part I/N`
of this version (or its files were changed).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.console import Console

from data_tools.config import MergeConfig
from data_tools.shard_check import verify
from data_tools.pack_job import TOP_UNK, print_summary
from data_tools.readers import ReadStats
from roberta_ds.owned_dir import claim_dir
from roberta_ds.shard_format import (
    source_stamp,
    MANIFEST_NAME,
    SPLITS,
    TOKENIZER_DIRNAME,
    Manifest,
    SplitInfo,
    read_manifest,
    sha256_file,
    unigram_line,
    write_manifest,
)

MAY_DIFFER = ("input", "tokenizer_path", "shard_size_mb", "part")
"""Pack options that may differ between parts: where each read its input and tokenizer (a node-local copy, say),
the shard size, and the part itself. The tokenizer is compared by identity instead."""

LAYOUT = ("max_seq_length", "wwm", "dtype", "sequences_per_sample")
"""Manifest fields every part must share: how the shards are laid out."""

READER_COUNTS = tuple(ReadStats().to_dict())
"""The reader's counts in a manifest's corpus: the same in every part that read the same input."""

EXAMPLES = 10
"""Problem examples kept when the parts' reader counts are summed."""

SUMMED = ("documents_empty", "duplicates_dropped", "documents_kept", "document_tokens", "unk_tokens")
"""Processing counts of the documents a part kept or dropped: they add up over the parts."""


@dataclass
class Part:
    dir: Path
    manifest: Manifest
    index: int
    of: int

    @property
    def label(self) -> str:
        return f"{self.dir} (part {self.index}/{self.of})"


def run_merge(cfg: MergeConfig, console: Console | None = None) -> Manifest:
    console = console or Console(stderr=True)
    parts = read_parts(cfg.parts)
    check_parts(parts)
    hashes = {id(p): {s: _load(p, info.document_hashes) for s, info in p.manifest.splits.items()} for p in parts}
    duplicated = duplicates_across_parts(parts, hashes)
    if duplicated["documents"] and not cfg.allow_duplicates:
        raise ValueError(
            f"{duplicated['documents']} document(s) are in more than one part ({duplicated['by_part']}). Parts "
            "packed with --part I/N from one N share no document (a document's part is its content hash modulo N), "
            "so these parts were not all made that way (packed from different inputs by another tool or version, "
            "or their files were changed). Merging would keep every copy; pass --allow_duplicates to merge anyway "
            "(the manifest counts them), or re-pack the parts from one input with one N."
        )
    problems = []
    for p in parts:
        console.print(f"verifying {p.label}")
        problems += [f"{p.dir}/{line}" for line in verify(p.dir, console)]
    if problems:
        raise ValueError(
            f"{len(problems)} problem(s) in the parts' shards (nothing written):\n  " + "\n  ".join(problems)
            + "\nCopy the named shards again from where the part was packed, or re-pack that part; then merge again."
        )

    out = cfg.output
    if (out / MANIFEST_NAME).exists():
        raise ValueError(f"{out} already holds a finished dataset (manifest.json); choose a new --output or delete it.")
    claim_dir(out, "data_tools merge", {*SPLITS, TOKENIZER_DIRNAME, MANIFEST_NAME + ".tmp"}, flag="--output", what="a data_tools dataset")
    width = len(str(parts[0].of))
    splits: dict[str, SplitInfo] = {}
    placed = Counter()
    parts_info = []
    for p in parts:
        linked_before = placed["linked"]
        for split, info in p.manifest.splits.items():
            for sh in info.shards:
                name = f"{split}/part{p.index:0{width}d}-{Path(sh.name).name}"
                (out / split).mkdir(parents=True, exist_ok=True)
                placed["linked" if place(p.dir / sh.name, out / name, sh.sha256) else "copied"] += 1
                splits.setdefault(split, SplitInfo()).shards.append(replace(sh, name=name))
        n_shards = sum(len(i.shards) for i in p.manifest.splits.values())
        parts_info.append({
            "index": p.index, "of": p.of, "dir": str(p.dir.resolve()), "input": p.manifest.source.get("input"),
            "created": p.manifest.source.get("created"), "roberta_ds_version": p.manifest.source.get("roberta_ds_version"),
            "documents": p.manifest.corpus.get("documents_kept"), "shards": n_shards,
            "shards_hard_linked": placed["linked"] - linked_before,
        })
    shutil.copytree(parts[0].dir / TOKENIZER_DIRNAME, out / TOKENIZER_DIRNAME)

    tok = parts[0].manifest.tokenizer
    counts: dict[str, np.ndarray] = {}
    for split in [s for s in SPLITS if any(s in p.manifest.splits for p in parts)]:
        merged = splits.setdefault(split, SplitInfo())
        merged.documents = sum(p.manifest.splits[split].documents for p in parts if split in p.manifest.splits)
        got = [hashes[id(p)][split] for p in parts if hashes[id(p)].get(split) is not None]
        if got:
            merged.document_hashes = f"{split}/documents.npy"
            (out / split).mkdir(parents=True, exist_ok=True)
            np.save(out / merged.document_hashes, np.concatenate(got).astype(np.uint64), allow_pickle=False)
        tc = [_load(p, p.manifest.splits[split].token_counts) for p in parts if split in p.manifest.splits]
        tc = [c for c in tc if c is not None]
        if tc:
            counts[split] = np.sum(tc, axis=0, dtype=np.int64)
            merged.token_counts = f"{split}/token_counts.npy"
            np.save(out / merged.token_counts, counts[split], allow_pickle=False)

    corpus = merge_corpus([p.manifest.corpus for p in parts], duplicated["documents"])
    if "unigram" in parts[0].manifest.corpus and {"train", "validation"} <= set(counts):
        corpus["unigram"] = unigram_line(counts["train"], counts["validation"], tok)
    first = parts[0].manifest
    inputs = [p.manifest.source.get("input") for p in parts]
    same_input = all(i == inputs[0] for i in inputs)
    options = {k: v for k, v in first.source.get("options", {}).items() if k != "part"}
    options["input"] = inputs[0] if same_input else inputs
    manifest = Manifest(
        tokenizer=tok,
        max_seq_length=first.max_seq_length,
        wwm=first.wwm,
        dtype=first.dtype,
        sequences_per_sample=first.sequences_per_sample,
        splits={s: splits.get(s, SplitInfo()) for s in SPLITS},
        corpus=corpus,
        source={
            "format": first.source.get("format"),
            "input": options["input"],
            "options": options,
            **source_stamp("data_tools merge"),
            "parts": parts_info,
            "padding_note": "each part's last shard of a split may end in one padded sequence "
                            "(ShardInfo.padding_tokens); no other sequence holds [PAD]",
        },
    )
    write_manifest(out, manifest)  # last: its presence means the dataset is complete
    console.print(f"merged {len(parts)} parts into {out}: {placed['linked']} shards hard-linked, "
                  f"{placed['copied']} copied")
    print_summary(console, manifest)
    return manifest


def read_parts(dirs: list[Path]) -> list[Part]:
    """The parts' manifests, sorted by part number; every directory that is not a finished part, at once."""
    parts, problems = [], []
    for d in dirs:
        if not (d / MANIFEST_NAME).exists():
            why = "it does not exist" if not d.exists() else "no manifest.json: not a finished pack"
            problems.append(f"{d}: {why} (a killed pack finishes when its pack command runs again)")
            continue
        m = read_manifest(d)
        part = m.source.get("part")
        if part is None:
            what = "a merged dataset" if m.source.get("tool") == "data_tools merge" else "packed without --part"
            problems.append(f"{d}: {what}; merge takes the N directories written by `data_tools pack --part I/N`")
            continue
        parts.append(Part(d, m, int(part["index"]), int(part["of"])))
    if problems:
        raise ValueError("cannot merge:\n  " + "\n  ".join(problems))
    return sorted(parts, key=lambda p: p.index)


def check_parts(parts: list[Part]) -> None:
    """Parts 1..N of one N, each once, one tokenizer identity, one set of packing settings."""
    ns = sorted({p.of for p in parts})
    if len(ns) > 1:
        groups = "; ".join(f"N={n}: " + ", ".join(p.label for p in parts if p.of == n) for n in ns)
        raise ValueError(
            f"parts of different N ({groups}). "
            "Pack every part of one dataset with the same N (--part I/N, I = 1..N) and merge those."
        )
    n = ns[0]
    problems = []
    by_index: dict[int, list[Part]] = {}
    for p in parts:
        by_index.setdefault(p.index, []).append(p)
    for i, ps in sorted(by_index.items()):
        if not 1 <= i <= n:
            problems.append(f"{', '.join(str(p.dir) for p in ps)}: part {i}/{n} is not a part of 1..{n}")
        elif len(ps) > 1:
            problems.append(f"part {i}/{n} given {len(ps)} times: {', '.join(str(p.dir) for p in ps)}; pass it once")
    missing = [f"{i}/{n}" for i in range(1, n + 1) if i not in by_index]
    if missing:
        problems.append(
            f"part(s) {', '.join(missing)} missing (given: {', '.join(f'{i}/{n}' for i in sorted(by_index))}): "
            f"pack each missing part with its --part I/{n} (e.g. --part {missing[0]}) and pass all {n} part directories"
        )
    ref = parts[0]
    for p in parts[1:]:
        conflicts = ref.manifest.tokenizer.conflicts(p.manifest.tokenizer)
        if conflicts:
            problems.append(
                f"{p.label} has another tokenizer than {ref.label}: {'; '.join(conflicts)}. "
                "Pack every part with the same --tokenizer_path"
            )
        diff = settings_diff(ref.manifest, p.manifest)
        if diff:
            problems.append(
                f"{p.label} was packed with other settings than {ref.label}: {'; '.join(diff)}. "
                "Re-pack it with the same options as the other parts"
            )
    if problems:
        raise ValueError("cannot merge:\n  " + "\n  ".join(problems))


def settings_diff(a: Manifest, b: Manifest) -> list[str]:
    """'--max_seq_length 128 vs 256' for every layout field or pack option (but MAY_DIFFER) that differs."""
    out = [f"{k} {getattr(a, k)!r} vs {getattr(b, k)!r}" for k in LAYOUT if getattr(a, k) != getattr(b, k)]
    oa, ob = a.source.get("options", {}), b.source.get("options", {})
    for k in sorted((set(oa) | set(ob)) - set(MAY_DIFFER) - set(LAYOUT) - {"workers", "chunk_docs"}):
        if oa.get(k) != ob.get(k):
            out.append(f"--{k} {oa.get(k)!r} vs {ob.get(k)!r}")
    return out


def duplicates_across_parts(parts: list[Part], hashes: dict[int, dict[str, np.ndarray | None]]) -> dict:
    """Documents (content hashes) found in more than one part, and per part how many of its documents those are."""
    per_part = [np.concatenate([h for h in hashes[id(p)].values() if h is not None] or [np.zeros(0, np.uint64)])
                for p in parts]
    uniq, n = np.unique(np.concatenate(per_part), return_counts=True)
    shared = uniq[n > 1]
    by_part = {f"part {p.index}/{p.of}": int(np.isin(h, shared).sum()) for p, h in zip(parts, per_part)}
    return {"documents": int(len(shared)), "extra_copies": int((n[n > 1] - 1).sum()),
            "by_part": ", ".join(f"{k}: {v}" for k, v in by_part.items() if v)}


def merge_corpus(corpora: list[dict], duplicated: int) -> dict:
    """One corpus statistics dict from the parts' (see the module docstring for what is summed)."""
    def reader_counts(c: dict) -> dict:
        d = {k: c.get(k) for k in READER_COUNTS if k in c}
        d["categories_read"] = {cat: v["read"] for cat, v in c.get("categories", {}).items()}
        return d

    out = dict(corpora[0])
    out.pop("documents_other_parts", None)
    reads = [reader_counts(c) for c in corpora]
    if all(r == reads[0] for r in reads):
        out["reader_counts_note"] = "the same in every part (each read the whole input): counted once"
        read = reads[0]
    else:
        out["reader_counts_note"] = "the parts read different inputs: summed over the parts"
        read = {}
        for k in reads[0]:
            vals = [r.get(k) for r in reads]
            if isinstance(vals[0], dict):
                read[k] = dict(sorted(sum((Counter(v or {}) for v in vals), Counter()).items()))
            elif isinstance(vals[0], list):
                read[k] = [x for v in vals for x in (v or [])][:EXAMPLES]
            else:
                read[k] = sum(v or 0 for v in vals)
    out.update({k: v for k, v in read.items() if k != "categories_read"})
    for k in SUMMED:
        out[k] = sum(c.get(k, 0) for c in corpora)
    out["unk_rate"] = out["unk_tokens"] / out["document_tokens"] if out["document_tokens"] else 0.0
    unk = sum((Counter(dict(map(tuple, c.get("top_unk_chars", [])))) for c in corpora), Counter())
    out["top_unk_chars"] = [[ch, n] for ch, n in sorted(unk.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_UNK]]
    out["top_unk_chars_note"] = f"summed from each part's top {TOP_UNK}: a lower bound per character"
    if "quality_filters" in out:  # each part filtered its own documents: sum the drops, keep examples from each
        q = [c.get("quality_filters", {}) for c in corpora]
        out["quality_filters"] = {
            **out["quality_filters"],
            "dropped": {r: sum(x.get("dropped", {}).get(r, 0) for x in q) for r in out["quality_filters"]["dropped"]},
            "examples": {r: [e for x in q for e in x.get("examples", {}).get(r, [])][:EXAMPLES]
                         for r in out["quality_filters"].get("examples", {})},
        }
    if "near_dedup" in out:  # each part dropped the drop list's documents of its own part: sum them
        nd = [c.get("near_dedup", {}) for c in corpora]
        out["near_dedup"] = {**out["near_dedup"], "dropped": sum(x.get("dropped", 0) for x in nd),
                             "examples": [e for x in nd for e in x.get("examples", [])][:EXAMPLES]}
    if "normalization" in out:
        out["normalization"] = {**out["normalization"],
                                "replacements": sum(c["normalization"]["replacements"] for c in corpora)}
    if "categories" in out:
        cats = sorted({cat for c in corpora for cat in c.get("categories", {})})
        out["categories"] = {cat: {"read": read["categories_read"].get(cat, 0),
                                   "kept": sum(c.get("categories", {}).get(cat, {}).get("kept", 0) for c in corpora)}
                             for cat in cats}
    out["duplicates_across_parts"] = duplicated
    return out


def place(src: Path, dst: Path, sha256: str) -> bool:
    """Hard-link ``src`` at ``dst`` (True), or copy it where a link cannot be made (False; the copy is re-hashed)."""
    try:
        os.link(src, dst)
        return True
    except OSError:  # another filesystem, or one without hard links
        shutil.copyfile(src, dst)
    got = sha256_file(dst)
    if got != sha256:
        raise ValueError(f"{dst}: the copy of {src} has sha256 {got[:16]}…, the part's manifest {sha256[:16]}…; "
                         "check the disk and merge again")
    return False


def _load(p: Part, rel: str) -> np.ndarray | None:
    return np.load(p.dir / rel, allow_pickle=False) if rel else None
