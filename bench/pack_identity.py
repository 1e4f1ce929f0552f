"""Do this checkout's data_tools write the same bytes as another revision's? Runs the same pack commands with both
codes on one generated crawl (a synthetic crawl in 4 JSONL files with planted near-duplicates, exact copies, empty
documents and documents each quality filter drops) and compares every output file: shards, documents.npy, token
counts, drop lists, and the manifests less their creation time and version stamp.

    python bench/pack_identity.py --against REV [--size_mb 3]

The other revision is checked out with `git worktree` into a temporary directory and run with this environment's
Python (PYTHONPATH first), so both run on the same libraries. Exit 1 when any file differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
VOCAB = ROOT / "tests" / "data" / "chinese-bert-vocab.txt"
FILTERS = ["--min_chars", "40", "--max_non_han", "0.7", "--max_repeated_lines", "0.3", "--max_repeated_paragraphs",
           "0.3"]


def make_input(root: Path, size_mb: float) -> None:
    from pack_scale import make_crawl

    info = make_crawl(root / "all.jsonl", size_mb)
    lines = (root / "all.jsonl").read_text(encoding="utf-8").splitlines()
    (root / "all.jsonl").unlink()
    rng = random.Random(7)
    odd = ["短文。", "", "   ", "Breaking news: markets rallied on Tuesday as investors cheered the data. " * 3,
           "同一行重复出现。\n" * 6, "第一段内容比较长一些。\n\n第一段内容比较长一些。\n\n第一段内容比较长一些。"]
    for _ in range(40):  # quality-filter drops, empties and exact copies of earlier documents, spread over the files
        text = rng.choice(odd) if rng.random() < 0.6 else json.loads(lines[rng.randrange(len(lines))])["text"]
        lines.insert(rng.randrange(len(lines)), json.dumps({"text": text}, ensure_ascii=False))
    crawl = root / "crawl"
    crawl.mkdir()
    per = -(-len(lines) // 4)
    for f in range(4):
        (crawl / f"{f}.jsonl").write_text("\n".join(lines[per * f: per * (f + 1)]) + "\n", encoding="utf-8")
    print(f"input: {len(lines):,} documents ({info['documents']:,} synthetic, 40 odd ones) in 4 files", flush=True)


def commands(crawl: Path, out: Path) -> list[tuple[str, list[str]]]:
    common = ["--format", "jsonl", "--input", str(crawl), "--workers", "2"]
    pack = ["pack", *common, "--tokenizer_path", str(VOCAB), "--max_seq_length", "128", "--shard_size_mb", "0.5"]
    return [
        ("pack", [*pack, "--output", str(out / "pack")]),
        ("pack --wwm, filters, --near_dedup", [*pack, "--wwm", *FILTERS, "--near_dedup", "--output",
                                                str(out / "filtered")]),
        ("near-dups inline, filters", ["near-dups", *common, *FILTERS, "--output", str(out / "list")]),
        ("pack --drop_list", [*pack, *FILTERS, "--drop_list", str(out / "list"), "--output", str(out / "dropped")]),
        ("pack --part 1/2", [*pack, "--part", "1/2", "--output", str(out / "p1")]),
        ("pack --part 2/2", [*pack, "--part", "2/2", "--output", str(out / "p2")]),
        ("merge", ["merge", str(out / "p1"), str(out / "p2"), "--output", str(out / "merged")]),
        ("near-dups --executor local", ["near-dups", *common, *FILTERS, "--executor", "local", "--tasks", "2",
                                        "--output", str(out / "dtlist")]),
        ("pack --executor local --parts 2", [*pack, *FILTERS, "--executor", "local", "--parts", "2", "--part_by",
                                             "files", "--drop_list", str(out / "dtlist"), "--output",
                                             str(out / "dtpack")]),
    ]


JSONS: dict[str, dict] = {}
"""The stamp-less manifests and near_dups.json files of the last digests() call, to say what differs in them."""


def digests(out: Path) -> dict[str, str]:
    """sha256 of every file under ``out`` (datatrove's work files and logs left out; manifests without their stamps)."""
    d = {}
    JSONS.clear()
    for f in sorted(out.rglob("*")):
        rel = str(f.relative_to(out))
        if not f.is_file() or ".datatrove" in f.parts or "logs" in f.parts:
            continue
        data = f.read_bytes()
        if f.name in ("manifest.json", "near_dups.json"):
            JSONS[rel] = _unstamped(json.loads(data))
            data = json.dumps(JSONS[rel], sort_keys=True, ensure_ascii=False).encode()
        d[rel] = hashlib.sha256(data).hexdigest()
    return d


def _unstamped(j):
    """``j`` without when and by which version it was written, at any depth (a merge records its parts' stamps)."""
    if isinstance(j, dict):
        return {k: _unstamped(v) for k, v in j.items() if k not in ("created", "roberta_ds_version", "seconds_last_run")}
    return [_unstamped(v) for v in j] if isinstance(j, list) else j


def _changed(a, b, path: str = "") -> list[str]:
    """The key paths at which two JSON values differ (added, removed or changed)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(a.keys() | b.keys()) for p in
                (_changed(a[k], b[k], f"{path}.{k}") if k in a and k in b else [f"{path}.{k} ({'added' if k in b else 'removed'})"])]
    return [] if a == b else [path or "(root)"]


def run_all(code: Path, crawl: Path, out: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    for name, args in commands(crawl, out):
        p = subprocess.run([sys.executable, "-m", "data_tools", *args], cwd=code, env=env, capture_output=True,
                           text=True)
        if p.returncode:
            sys.exit(f"{code}: {name} failed:\n{p.stderr[-3000:]}")
    return digests(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", required=True, help="a git revision of this repository")
    ap.add_argument("--size_mb", type=float, default=3.0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_input(tmp, a.size_mb)
        other = tmp / "other"
        subprocess.run(["git", "worktree", "add", "--detach", str(other), a.against], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            theirs = run_all(other, tmp / "crawl", tmp / "out")  # the same paths: the manifests record them
            their_jsons = dict(JSONS)
            shutil.rmtree(tmp / "out")
            ours = run_all(ROOT, tmp / "crawl", tmp / "out")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, capture_output=True)
    differ = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
    print(f"{len(ours)} files from {len(commands(Path(), Path()))} commands; {len(differ)} differ from {a.against}")
    for k in differ:
        print(f"  DIFFERS {k}: {theirs.get(k, 'missing')[:12]} ({a.against}) vs {ours.get(k, 'missing')[:12]} (this)")
        if k in JSONS and k in their_jsons:
            print("    keys: " + ", ".join(_changed(their_jsons[k], JSONS[k])))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
