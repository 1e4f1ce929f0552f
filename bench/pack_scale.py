"""Packing at crawl scale: a synthetic crawl (inews sentences recombined into new documents, seeded, 5 % planted
near-duplicates) at several sizes; for each, in the same run, on the same file, tokenizer and workers:

- `data_tools pack` (MB/s, documents/s, peak RSS of the main process and of a worker),
- `data_tools pack --near_dedup` (the same, plus planted near-duplicates dropped and unique documents dropped),
- what run_mlm users pack with: `datasets.load_dataset("json")` -> `map(tokenize, batched, num_proc)` ->
  `map(group_texts)` -> `save_to_disk`,
- `data_tools build-vocab --workers` on the same file,
- with `--arms ...,neardups,dtneardups`: `data_tools near-dups` inline (rensa's index in memory) and on datatrove's
  local executor (one signature task in one process), each with the share of planted copies and of the other
  documents its drop list holds, and the peak RSS growth per added document between the first and last size.

    python bench/pack_scale.py [--sizes_mb 15 30 60] [--workers 2] [--tokenizer_path tests/data/chinese-bert-vocab.txt]

Every arm runs in its own child process (peak RSS is per arm); run it alone on the machine (it is timed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one worker = one core, in every arm

PLANTED_SHARE = 0.05


def make_crawl(path: Path, size_mb: float, seed: int = 0) -> dict:
    """Write a JSONL crawl of about ``size_mb`` MB; returns its documents' count and the planted copies' indices."""
    from data_tools.readers import ReaderConfig, ReadStats, read_documents
    from synthetic_crawl import recombined, sentences, with_planted

    pool = sentences([d.text for d in read_documents(ReaderConfig("inews"), ReadStats())])
    rng = random.Random(seed)
    docs: list[str] = []
    size = 0
    while size < size_mb * 1e6:  # batches of 1,000 documents until the size is reached
        batch = recombined(pool, 1000, seed=rng.randrange(2**31))
        docs += batch
        size += sum(len(json.dumps({"text": d}, ensure_ascii=False).encode()) + 1 for d in batch)
    docs, planted = with_planted(docs, int(PLANTED_SHARE * len(docs)), seed=seed + 1)
    with path.open("w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    return {"documents": len(docs), "planted": planted, "bytes": path.stat().st_size}


def _peak_rss_mib() -> float:
    """This process' peak RSS since its exec (VmHWM). Not ru_maxrss: Linux keeps that across fork and exec, so an arm
    started by a parent holding the synthetic crawl in memory would report the parent's size as its floor."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss() -> dict:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"rss_main_mib": _peak_rss_mib(), "rss_worker_mib": kids.ru_maxrss / 1024,
            "cpu_main_s": me.ru_utime + me.ru_stime, "cpu_workers_s": kids.ru_utime + kids.ru_stime}


def arm_pack(src: Path, out: Path, tok: str, workers: int, near: bool, part: str | None = None) -> dict:
    from rich.console import Console

    from data_tools.config import PackConfig
    from data_tools.pack_job import run_pack
    from data_tools.readers import ReaderConfig

    cfg = PackConfig(ReaderConfig("jsonl", src), out, tok, workers=workers, near_dedup=near, part=part)
    cpu0 = _rss()["cpu_main_s"]  # the imports are not the pack's
    t0 = time.perf_counter()
    m = run_pack(cfg, Console(stderr=True, quiet=True))
    return {"seconds": time.perf_counter() - t0, "documents_kept": m.corpus["documents_kept"],
            "near_dropped": m.corpus.get("near_dedup", {}).get("dropped", 0), "out": str(out),
            **{**_rss(), "cpu_main_s": _rss()["cpu_main_s"] - cpu0}}


def arm_datasets(src: Path, out: Path, tok: str, workers: int, block: int = 512) -> dict:
    """run_mlm's pipeline (transformers/examples/pytorch/language-modeling/run_mlm.py, --line_by_line off)."""
    from datasets import disable_progress_bars, load_dataset

    from roberta_ds.tokenizer import load_tokenizer

    disable_progress_bars()
    t0 = time.perf_counter()  # from the tokenizer's loading, as the pack's time
    tokenizer = load_tokenizer(tok)
    raw = load_dataset("json", data_files=str(src), split="train", cache_dir=str(out / "cache"))

    def tokenize(examples):
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    def group_texts(examples):
        concatenated = {k: [t for seq in examples[k] for t in seq] for k in examples}
        total = (len(concatenated["input_ids"]) // block) * block
        return {k: [t[i : i + block] for i in range(0, total, block)] for k, t in concatenated.items()}

    tokenized = raw.map(tokenize, batched=True, num_proc=workers, remove_columns=["text"])
    grouped = tokenized.map(group_texts, batched=True, num_proc=workers)
    grouped.save_to_disk(str(out / "saved"))
    return {"seconds": time.perf_counter() - t0, "sequences": len(grouped), **_rss()}


def arm_vocab(src: Path, out: Path, workers: int) -> dict:
    from rich.console import Console

    from data_tools.config import VocabConfig
    from data_tools.readers import ReaderConfig
    from data_tools.vocab import build_vocab

    t0 = time.perf_counter()
    build_vocab(VocabConfig(ReaderConfig("jsonl", src), out, workers=workers), Console(stderr=True, quiet=True))
    return {"seconds": time.perf_counter() - t0, **_rss()}


def arm_near_dups(src: Path, out: Path, workers: int, executor: str) -> dict:
    """`data_tools near-dups`: inline (rensa, one index in memory) or on datatrove's local executor (one signature
    task, run in this process: the worst case for memory, every document's signature sorted by one task)."""
    from rich.console import Console

    from data_tools.config import NearDupsConfig
    from data_tools.near_dups_job import run_near_dups
    from data_tools.readers import ReaderConfig

    t0 = time.perf_counter()
    extra = {"executor": "local", "tasks": 1} if executor == "datatrove" else {}
    run_near_dups(NearDupsConfig(ReaderConfig("jsonl", src), out, workers=1 if extra else workers, **extra),
                  Console(stderr=True, quiet=True))
    return {"seconds": time.perf_counter() - t0, **_rss()}


def child(argv: list[str]) -> None:
    arm, src, out, tok, workers = argv[0], Path(argv[1]), Path(argv[2]), argv[3], int(argv[4])
    if arm in ("pack", "near", "part8"):
        r = arm_pack(src, out, tok, workers, arm == "near", "1/8" if arm == "part8" else None)
    elif arm in ("neardups", "dtneardups"):
        r = arm_near_dups(src, out, workers, "datatrove" if arm == "dtneardups" else "inline")
    elif arm == "datasets":
        r = arm_datasets(src, out, tok, workers)
    else:
        r = arm_vocab(src, out, workers)
    print("RESULT " + json.dumps(r))


def run_arm(arm: str, src: Path, out: Path, tok: str, workers: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", arm, str(src), str(out), tok, str(workers)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{arm} failed:\n{proc.stderr[-3000:]}")
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])


def near_recall(out: Path, src: Path, planted: list[int]) -> tuple[float, float]:
    """(share of planted copies dropped, share of the other documents dropped) in a --near_dedup pack."""
    import numpy as np

    from data_tools.normalize import normalize
    from data_tools.tokenize_worker import doc_hash

    kept = {int(h) for s in ("train", "validation") if (out / s / "documents.npy").exists()
            for h in np.load(out / s / "documents.npy")}
    hashes = [doc_hash(normalize(json.loads(line)["text"])[0]) for line in src.open(encoding="utf-8")]
    p = set(planted)
    dropped_planted = sum(hashes[i] not in kept for i in planted)
    dropped_other = sum(h not in kept for i, h in enumerate(hashes) if i not in p)
    return dropped_planted / len(planted), dropped_other / (len(hashes) - len(planted))


def list_recall(out: Path, src: Path, planted: list[int]) -> tuple[float, float]:
    """(share of planted copies, share of the other documents) whose content hash a near-dups drop list holds."""
    from data_tools.near_dedup import DropList
    from data_tools.normalize import normalize
    from data_tools.tokenize_worker import doc_hash

    drop = DropList.load(out)
    hashes = [doc_hash(normalize(json.loads(line)["text"])[0]) for line in src.open(encoding="utf-8")]
    p = set(planted)
    listed_planted = sum(hashes[i] in drop for i in planted)
    listed_other = sum(h in drop for i, h in enumerate(hashes) if i not in p)
    return listed_planted / len(planted), listed_other / (len(hashes) - len(planted))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes_mb", type=float, nargs="+", default=[15, 30, 60])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tokenizer_path", default=str(ROOT / "tests" / "data" / "chinese-bert-vocab.txt"))
    ap.add_argument("--arms", default="pack,near,datasets,vocab")
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs per arm, interleaved (pack, datasets, pack, ...); the fastest is reported, as timeit does")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child)
        return
    arms = a.arms.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes_mb:
            src = Path(tmp) / f"crawl{size:g}.jsonl"
            info = make_crawl(src, size)
            mb = info["bytes"] / 1e6
            row = {"size_mb": mb, "documents": info["documents"], "planted": len(info["planted"])}
            for rep, arm in [(rep, arm) for rep in range(a.repeats) for arm in arms]:
                out = Path(tmp) / f"{arm}{size:g}-{rep}"
                r = run_arm(arm, src, out, a.tokenizer_path, a.workers)
                runs = [*row.get(arm, {}).get("runs_s", []), round(r["seconds"], 1)]
                if arm not in row or r["seconds"] < row[arm]["seconds"]:
                    row[arm] = r
                row[arm]["runs_s"] = runs
                if arm == "near":  # deterministic: the same documents in every run
                    row["near"]["planted_dropped"], row["near"]["unique_dropped"] = near_recall(out, src, info["planted"])
                if arm in ("neardups", "dtneardups"):
                    row[arm]["planted_dropped"], row[arm]["unique_dropped"] = list_recall(out, src, info["planted"])
                print(f"{mb:7.1f} MB {arm:9s} {r['seconds']:7.1f} s  {mb / r['seconds']:6.2f} MB/s  "
                      f"{info['documents'] / r['seconds']:8,.0f} docs/s  RSS main {r['rss_main_mib']:6.0f} MiB  "
                      f"worker {r['rss_worker_mib']:6.0f} MiB", flush=True)
            rows.append(row)
    print(f"\nsynthetic crawl: inews sentences recombined into documents of 8-30 sentences, "
          f"{PLANTED_SHARE:.0%} planted near-duplicates (5 characters changed, a footer added); "
          f"--workers {a.workers}; tokenizer {Path(a.tokenizer_path).name}; seconds: wall time, the fastest of "
          f"{a.repeats} run(s) per arm")
    for row in rows:
        line = f"{row['size_mb']:6.1f} MB, {row['documents']:,} documents:"
        if "pack" in row and "datasets" in row:
            line += (f" pack / datasets pipeline speed {row['datasets']['seconds'] / row['pack']['seconds']:.2f}x "
                     f"(fastest of {row['pack']['runs_s']} s and {row['datasets']['runs_s']} s);")
        if "pack" in row and "vocab" in row:
            line += f" build-vocab / pack time {row['vocab']['seconds'] / row['pack']['seconds']:.2f}x;"
        for arm in ("neardups", "dtneardups"):
            if arm in row:
                n = row[arm]
                line += (f" {arm} lists {n['planted_dropped']:.1%} of planted, {n['unique_dropped']:.2%} of the rest "
                         f"in {n['seconds']:.1f} s;")
        if "near" in row:
            n = row["near"]
            line += (f" near-dedup drops {n['planted_dropped']:.1%} of planted, {n['unique_dropped']:.2%} of the rest, "
                     f"costs {n['seconds'] / row['pack']['seconds']:.2f}x the pack's time" if "pack" in row else "")
        print(line)
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        growth = last["size_mb"] / first["size_mb"]
        for arm in [x for x in arms if x in first]:
            print(f"{arm}: peak RSS main x{last[arm]['rss_main_mib'] / first[arm]['rss_main_mib']:.2f}, worker "
                  f"x{last[arm]['rss_worker_mib'] / max(first[arm]['rss_worker_mib'], 1):.2f} for x{growth:.1f} corpus")
            peak = [r[arm]["rss_main_mib"] * 2**20 for r in (first, last)]
            print(f"{arm}: peak RSS of the main process (VmHWM) grows by "
                  f"{(peak[1] - peak[0]) / (last['documents'] - first['documents']):,.0f} bytes per added document "
                  f"({first['documents']:,} -> {last['documents']:,} documents)")
    big = rows[-1]
    if "pack" in big:
        print(extrapolation(big))
    print("JSON " + json.dumps(rows))


def extrapolation(row: dict, gb: float = 20.0, cores: int = 32) -> str:
    """Hours for a ``gb`` GB crawl like this one, from the measured CPU seconds of the main process (reading, dedup,
    packing, writing) and of the workers (normalising, tokenizing): on one machine of ``cores`` cores (cores - 1
    workers, the main process on the last one) and on a SLURM array of 8 parts of such machines (each part reads
    everything and tokenizes an eighth: the part8 arm). Linear in the corpus and in the workers: an estimate."""
    scale = gb * 1e3 / row["size_mb"]
    p = row["pack"]
    one = max(p["cpu_main_s"], p["cpu_workers_s"] / (cores - 1)) * scale / 3600
    text = (f"{gb:g} GB crawl, extrapolated (linear) from the {row['size_mb']:.0f} MB run's CPU seconds (main "
            f"{p['cpu_main_s']:.1f} s, workers {p['cpu_workers_s']:.1f} s): one {cores}-core machine {one:.2f} h")
    if "part8" in row:
        q = row["part8"]
        part = max(q["cpu_main_s"], q["cpu_workers_s"] / (cores - 1)) * scale / 3600
        text += (f"; a SLURM array of 8 parts on {cores}-core machines {part:.2f} h (part 1/8: main "
                 f"{q['cpu_main_s']:.1f} s, workers {q['cpu_workers_s']:.1f} s)")
    return text


if __name__ == "__main__":
    main()
