"""What one part of a multi-machine pack costs against a single pack: a synthetic crawl (bench/pack_scale.py's) split
into 8 JSONL files; a drop list from `near-dups --executor local` (not timed); then, each in its own process, in the
same run: `pack --drop_list` over everything, `pack --part 1/4 --drop_list` (hash: every part reads everything),
and `pack --part 1/4 --part_by files --drop_list` (part 1 reads files 1 and 5). Reports documents read and CPU-seconds
(main + workers) of each, and each part's ratio to the single pack.

    python bench/part_share.py [--size_mb 60] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def child(out: str, args: list[str]) -> None:
    from data_tools.cli import main

    assert main(["pack", *args, "--output", out]) == 0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    from roberta_ds.shard_format import read_manifest

    m = read_manifest(Path(out))
    print("RESULT " + json.dumps({"cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                                  "documents_read": m.corpus["documents_read"], "kept": m.corpus["documents_kept"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size_mb", type=float, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tokenizer_path", default=str(ROOT / "tests" / "data" / "chinese-bert-vocab.txt"))
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1:])
        return
    from pack_scale import make_crawl

    from data_tools.cli import main as data_main

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        info = make_crawl(tmp / "crawl.jsonl", a.size_mb)
        lines = (tmp / "crawl.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        crawl = tmp / "crawl"
        crawl.mkdir()
        per = -(-len(lines) // 8)
        for f in range(8):
            (crawl / f"{f}.jsonl").write_text("".join(lines[per * f: per * (f + 1)]), encoding="utf-8")
        assert data_main(["near-dups", "--format", "jsonl", "--input", str(crawl), "--output", str(tmp / "list"),
                          "--executor", "local", "--tasks", "2", "--workers", str(a.workers)]) == 0
        common = ["--format", "jsonl", "--input", str(crawl), "--tokenizer_path", a.tokenizer_path, "--workers",
                  str(a.workers), "--max_seq_length", "512", "--drop_list", str(tmp / "list")]
        arms = {"single": [], "part 1/4 (hash)": ["--part", "1/4"],
                "part 1/4 (files)": ["--part", "1/4", "--part_by", "files"]}
        res = {}
        for name, extra in arms.items():
            out = tmp / name.replace(" ", "_").replace("/", "-")
            proc = subprocess.run([sys.executable, __file__, "--child", str(out), *common, *extra],
                                  capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
            res[name] = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
    total = info["documents"]
    print(f"synthetic crawl {info['bytes'] / 1e6:.1f} MB, {total:,} documents in 8 files; --workers {a.workers}; "
          "CPU-seconds = user + system of the pack's process and its workers")
    for name, r in res.items():
        print(f"{name:18s} read {r['documents_read']:7,} documents ({r['documents_read'] / total:.2f} of them), kept "
              f"{r['kept']:7,}, {r['cpu_s']:6.1f} CPU-s ({r['cpu_s'] / res['single']['cpu_s']:.2f} of the single pack)")


if __name__ == "__main__":
    main()
