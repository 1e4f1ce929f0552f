"""What one part of a multi-machine pack costs against a single pack: a synthetic crawl (bench/pack_scale.py's) split
into 8 JSONL files; a drop list from `near-dups --executor local --tasks 8 --workers 1` (its stages run one after
the other in this process: each stage's seconds are read from datatrove's completion files); then, each in its own
process, in the same run: `pack --drop_list` over everything, `pack --part 1/4 --drop_list` (hash: every part reads
everything), `pack --part 1/4 --part_by files --drop_list` (part 1 reads files 1 and 5) and `--part 1/8 --part_by
files`. Reports documents read and CPU-seconds (main + workers, the imports left out) of each, each part's ratio to the single pack, and
a 20 GB crawl's wall time on one machine and on an 8-node SLURM array, extrapolated from these rates.

    python bench/part_share.py [--size_mb 60] [--workers 2] [--gb 20] [--nodes 8] [--cores 32]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def child(out: str, args: list[str]) -> None:
    from data_tools.cli import main
    from data_tools import pack_job  # noqa: F401  (imports are not the pack's work: their CPU is left out)

    before = resource.getrusage(resource.RUSAGE_SELF)
    assert main(["pack", *args, "--output", out]) == 0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    me = type("R", (), {"ru_utime": me.ru_utime - before.ru_utime, "ru_stime": me.ru_stime - before.ru_stime})
    from roberta_ds.shard_format import read_manifest

    m = read_manifest(Path(out))
    print("RESULT " + json.dumps({"cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                                  "cpu_main_s": me.ru_utime + me.ru_stime, "cpu_workers_s": kids.ru_utime + kids.ru_stime,
                                  "documents_read": m.corpus["documents_read"], "kept": m.corpus["documents_kept"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size_mb", type=float, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tokenizer_path", default=str(ROOT / "tests" / "data" / "chinese-bert-vocab.txt"))
    ap.add_argument("--gb", type=float, default=20.0, help="the crawl size to extrapolate to")
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--cores", type=int, default=32, help="cores per node")
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
        t0 = time.time()
        assert data_main(["near-dups", "--format", "jsonl", "--input", str(crawl), "--output", str(tmp / "list"),
                          "--executor", "local", "--tasks", "8", "--workers", "1"]) == 0
        stages = stage_seconds(tmp / "list" / ".datatrove" / "logs", t0)
        common = ["--format", "jsonl", "--input", str(crawl), "--tokenizer_path", a.tokenizer_path, "--workers",
                  str(a.workers), "--max_seq_length", "512", "--drop_list", str(tmp / "list")]
        arms = {"single": [], "part 1/4 (hash)": ["--part", "1/4"],
                "part 1/4 (files)": ["--part", "1/4", "--part_by", "files"],
                "part 1/8 (files)": ["--part", "1/8", "--part_by", "files"]}
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
    print(f"near-dups on datatrove, 8 signature tasks then 16 bucket tasks then 1 cluster task, run one at a time: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    print(extrapolation(info["bytes"], stages, res, a.gb, a.nodes, a.cores))


def stage_seconds(logs: Path, t0: float) -> dict[str, float]:
    """Each stage's seconds from its tasks' completion files (tasks run one at a time: --workers 1): from the last
    completion of the stage before (or ``t0``) to its own last."""
    out, before = {}, t0
    for stage in ("signatures", "buckets", "clusters"):
        last = max(f.stat().st_mtime for f in (logs / stage / "completions").iterdir())
        out[stage], before = last - before, last
    return out


def extrapolation(size: int, stages: dict, res: dict, gb: float, nodes: int, cores: int) -> str:
    """Wall hours for a ``gb`` GB crawl like this one: on one machine of ``cores`` cores and on ``nodes`` such
    machines. Pack: per-document CPU rates of the main process and of the workers from the difference between the
    parts 1/4 and 1/8 (by files; what a part costs whatever its size, starting the pool, loading the tokenizer, is
    not scaled), the main process and ``cores`` - 1 workers, whichever is the bound, one part per node. Near-dups,
    linear in the corpus: the signature stage's tasks spread over every core (one core each), the 16 bucket tasks
    (one per band) over 16 cores, the one cluster task. Merge left out (hard links, seconds)."""
    scale = gb * 1e9 / size
    q4, q8 = res["part 1/4 (files)"], res["part 1/8 (files)"]
    docs = q4["documents_read"] - q8["documents_read"]
    rate = {k: (q4[k] - q8[k]) / docs for k in ("cpu_main_s", "cpu_workers_s")}
    fixed = {k: q8[k] - rate[k] * q8["documents_read"] for k in rate}
    total = res["single"]["documents_read"] * scale

    def pack_h(n_docs: float) -> float:
        return max(rate["cpu_main_s"] * n_docs + fixed["cpu_main_s"],
                   (rate["cpu_workers_s"] * n_docs + fixed["cpu_workers_s"]) / (cores - 1)) / 3600

    def dedup_h(n: int) -> float:
        return (stages["signatures"] / (n * cores) + stages["buckets"] / min(16, n * cores)
                + stages["clusters"]) * scale / 3600

    one, many = dedup_h(1) + pack_h(total), dedup_h(nodes) + pack_h(total / nodes)
    return (f"{gb:g} GB crawl ({total:,.0f} documents like these), extrapolated: one {cores}-core machine "
            f"{one:.2f} h (near-dups {dedup_h(1):.2f} h + pack {pack_h(total):.2f} h); {nodes} such nodes {many:.2f} h "
            f"(near-dups {dedup_h(nodes):.2f} h + one part per node {pack_h(total / nodes):.2f} h), {one / many:.1f}x. "
            f"Per document: main {rate['cpu_main_s'] * 1e3:.3f} CPU-ms, workers {rate['cpu_workers_s'] * 1e3:.2f} "
            f"CPU-ms (parts 1/4 - 1/8); per part: main {fixed['cpu_main_s']:.1f} CPU-s, workers "
            f"{fixed['cpu_workers_s']:.1f} CPU-s; the one cluster task took {stages['clusters']:.1f} s here")


if __name__ == "__main__":
    main()
