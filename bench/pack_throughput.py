"""Packing throughput on the inews corpus against the bare fast tokenizer on the same text.

    python bench/pack_throughput.py [--tokenizer_path PATH] [--workers 1 2]

For each worker count: packing tokens/s (end to end: read, normalise, dedup, tokenize, jieba-free
packing, tar writing, manifest), the bare tokenizer's tokens/s on one core on the same document
texts, their ratio per worker (pack / (workers x bare)), bytes per token on disk, and peak RSS.
Each pack runs in its own child process so peak memory is per configuration; rayon threads are
off (TOKENIZERS_PARALLELISM=false) so "one worker" means one core. Target: ratio >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(workers: int, out: Path, tokenizer_path: str) -> None:
    from rich.console import Console

    from data_tools.config import PackConfig
    from data_tools.pack_job import run_pack
    from data_tools.readers import ReaderConfig

    cfg = PackConfig(ReaderConfig("inews"), out, tokenizer_path, workers=workers)
    t0 = time.perf_counter()
    m = run_pack(cfg, Console(stderr=True, quiet=True))
    dt = time.perf_counter() - t0
    tokens = sum(s.tokens + s.padding_tokens for s in m.splits.values())
    disk = sum(sh.bytes for s in m.splits.values() for sh in s.shards)
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": dt, "doc_tokens": m.corpus["document_tokens"], "bytes_per_token": disk / tokens,
                      "rss_main_mb": self_rss / 1024, "rss_worker_max_mb": kids_rss / 1024}))


def bare(tokenizer_path: str, tmp: Path) -> tuple[float, int]:
    from data_tools.normalize import normalize
    from data_tools.readers import ReaderConfig, ReadStats, read_documents
    from roberta_ds.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_path)
    tok.save_pretrained(str(tmp / "tok"))
    from data_tools.tokenize_worker import corpus_tokenizer

    backend = corpus_tokenizer(str(tmp / "tok" / "tokenizer.json"))  # as pack: literal "[SEP]" is text
    texts = [normalize(d.text)[0] for d in read_documents(ReaderConfig("inews"), ReadStats())]
    t0 = time.perf_counter()
    n = 0
    for i in range(0, len(texts), 64):  # same chunking as pack's default --chunk_docs
        n += sum(len(e.ids) for e in backend.encode_batch(texts[i : i + 64], add_special_tokens=False))
    return n / (time.perf_counter() - t0), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer_path", default=None)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--child", nargs=2, metavar=("WORKERS", "OUT"))
    a = ap.parse_args()
    tok_path = a.tokenizer_path
    if tok_path is None:
        sys.exit("give --tokenizer_path (a vocab.txt or tokenizer directory, e.g. the standard Chinese BERT vocab); "
                 "to build one: `python -m data_tools build-vocab --format inews --output VOCAB`")
    if a.child:
        child(int(a.child[0]), Path(a.child[1]), tok_path)
        return
    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory() as tmp:
        bare_tps, n = bare(tok_path, Path(tmp))
        t = Table(title=f"inews packing vs bare tokenizer ({n:,} document tokens; tokenizer {tok_path})")
        for col in ("workers", "pack tokens/s", "bare tokens/s x workers", "ratio per worker",
                    "bytes/token on disk", "peak RSS main MiB", "peak RSS worker MiB"):
            t.add_column(col, justify="right")
        for w in a.workers:
            out = Path(tmp) / f"w{w}"
            res = subprocess.run([sys.executable, __file__, "--tokenizer_path", tok_path, "--child", str(w), str(out)],
                                 check=True, capture_output=True, text=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            tps = r["doc_tokens"] / r["seconds"]
            t.add_row(str(w), f"{tps:,.0f}", f"{bare_tps * w:,.0f}", f"{tps / (bare_tps * w):.2f}",
                      f"{r['bytes_per_token']:.3f}", f"{r['rss_main_mb']:.0f}", f"{r['rss_worker_max_mb']:.0f}")
        Console().print(t)


if __name__ == "__main__":
    main()
