"""Useful tokens per second: roberta-ds against what users would run instead, in the same run.

    python bench/train_throughput.py --shards S512 [--shapes tiny,256x4,small] [--lengths 128,512] [--steps 20]
        [--repeats 3]

Every arm trains the same architecture on the inews corpus with micro batch 16 for the same number of optimizer
steps (2 more untimed for warm-up), fp32, one process, each in its own subprocess (for its peak RSS); repeats are
interleaved (arm A, B, C, A, B, C, ...) and the median is printed.

  seed-summary   the work we replace, on summary-length news (each document's first 80 characters, like YACND's
                 title + description rows): one document per row, padded to 512, transformers'
                 DataCollatorForLanguageModeling (15 %, 80/10/10), the full-vocabulary LM head, torch AdamW
  seed-full      the same on full articles (truncated to 512)
  run_mlm        Hugging Face run_mlm's recipe: documents tokenized and concatenated, cut into blocks of L tokens
                 (group_texts), DataCollatorForLanguageModeling, the full LM head, torch AdamW, plain loop
  bare-step      roberta-ds's model step alone: packed L-token sequences masked beforehand, the sparse LM head on
                 masked positions, torch AdamW, plain loop (no engine, no loader, no logging)
  roberta-ds     the whole trainer: the same code path as `launcher/pretrain.py` (config -> build_run -> Trainer:
                 loader, masking, DeepSpeed engine with ds_configs/zero2.json, logging), timed from its own
                 training window (steps 3.., excluding start-up)

Useful tokens: non-padding tokens trained on. Model FLOPs per step, the usual training count (3 x forward):
6 x (encoder parameters without embeddings) x tokens + 12 x layers x hidden x L x tokens (attention scores and
values) + 6 x hidden x vocab x (rows through the LM head: every token for the full head, the masked ones for the
sparse head), tokens = all positions computed (padding included). MFU = model FLOP/s / the fp32 matmul ceiling
measured in this run (torch.mm of 2048 x 2048 fp32 matrices, median of 5). Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {"tiny": "tiny", "small": "small", "256x4": "256x4"}
MICRO = 16
SUMMARY_CHARS = 80


def model_config(shape: str, tok, seq_len: int):
    from roberta_ds.model import ModelConfig, roberta_config

    if shape == "256x4":
        cfg = ModelConfig("tiny", hidden_size=256, num_heads=4, intermediate_size=1024, num_hidden_layers=4)
    else:
        cfg = ModelConfig(shape)
    return cfg, roberta_config(cfg, tok, seq_len)


def model_flops(hf, L: int, tokens: int, head_rows: int) -> float:
    h, layers, V = hf.hidden_size, hf.num_hidden_layers, hf.vocab_size
    per_layer = 4 * h * h + 2 * h * hf.intermediate_size  # attention projections + feed-forward (weights)
    return 6 * per_layer * layers * tokens + 12 * layers * h * L * tokens + 6 * h * V * head_rows


def matmul_ceiling() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        rates.append(4 * 2 * 2048**3 / (time.perf_counter() - t0))
    return statistics.median(rates)


# ---------------------------------------------------------------------------- arms (run in a subprocess each)
def _docs(n: int) -> list[str]:
    from data_tools.readers import ReaderConfig, ReadStats, read_documents

    return [d.text for _, d in zip(range(n), read_documents(ReaderConfig("inews"), ReadStats()))]


def _plain_loop(model, batches, steps: int) -> float:
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    t0 = None
    for i, batch in enumerate(batches[: steps + 2]):
        if i == 2:
            t0 = time.perf_counter()
        out = model(**batch)
        loss = out.loss if hasattr(out, "loss") else out[0] / batch["masked_labels"].numel()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def arm_seed(shards: Path, shape: str, seq_len: int, steps: int, summary: bool) -> dict:
    from transformers import DataCollatorForLanguageModeling

    from roberta_ds.model import build_model
    from roberta_ds.shard_format import TOKENIZER_DIRNAME, read_manifest
    from roberta_ds.tokenizer import load_tokenizer

    m = read_manifest(shards)
    tok = load_tokenizer(shards / TOKENIZER_DIRNAME)
    _, hf = model_config(shape, m.tokenizer, 512)
    docs = _docs((steps + 2) * MICRO)
    if summary:
        docs = [d[:SUMMARY_CHARS] for d in docs]
    enc = tok(docs, truncation=True, max_length=512, padding="max_length")
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    batches, real = [], 0
    for s in range(steps + 2):
        rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i]}
                for i in range(s * MICRO, (s + 1) * MICRO)]
        b = collator(rows)
        batches.append(b)
        if s >= 2:
            real += int(b["attention_mask"].sum())
    dt = _plain_loop(build_model(hf, seed=0).train(), batches, steps)
    positions = steps * MICRO * 512
    return {"useful_tokens": real, "seconds": dt, "flops": model_flops(hf, 512, positions, positions)}


def arm_run_mlm(shards: Path, shape: str, seq_len: int, steps: int) -> dict:
    from transformers import DataCollatorForLanguageModeling

    from roberta_ds.model import build_model
    from roberta_ds.shard_format import TOKENIZER_DIRNAME, read_manifest
    from roberta_ds.tokenizer import load_tokenizer

    m = read_manifest(shards)
    tok = load_tokenizer(shards / TOKENIZER_DIRNAME)
    _, hf = model_config(shape, m.tokenizer, seq_len)
    need = (steps + 2) * MICRO * seq_len
    ids: list[int] = []
    for doc in _docs(20000):  # run_mlm's tokenize_function + group_texts
        ids += tok(doc)["input_ids"]
        if len(ids) >= need:
            break
    blocks = [ids[i : i + seq_len] for i in range(0, need, seq_len)]
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    batches = [collator([{"input_ids": b} for b in blocks[s * MICRO : (s + 1) * MICRO]]) for s in range(steps + 2)]
    dt = _plain_loop(build_model(hf, seed=0).train(), batches, steps)
    positions = steps * MICRO * seq_len
    return {"useful_tokens": positions, "seconds": dt, "flops": model_flops(hf, seq_len, positions, positions)}


def _packed_batches(shards: Path, seq_len: int, n: int):
    from roberta_ds.data import Layout, PretrainingData, ShardStream
    from roberta_ds.masking import Masker, MaskingConfig
    from roberta_ds.shard_format import read_manifest

    m = read_manifest(shards)
    stream = ShardStream(shards, m, "train", seq_len, seed=0, shuffle=True)
    data = PretrainingData(stream, Layout(MICRO, 1, 1, 0), Masker(MaskingConfig(), m.tokenizer), 0)
    return m, [mbs[0] for mbs, _ in zip(data.steps(0), range(n))]


def arm_bare_step(shards: Path, shape: str, seq_len: int, steps: int) -> dict:
    from roberta_ds.data import model_inputs
    from roberta_ds.model import SparseMaskedLM, build_model

    m, raw = _packed_batches(shards, seq_len, steps + 2)
    _, hf = model_config(shape, m.tokenizer, seq_len)
    batches = [model_inputs(b) for b in raw]
    dt = _plain_loop(SparseMaskedLM(build_model(hf, seed=0)).train(), batches, steps)
    timed = raw[2:]
    return {"useful_tokens": sum(b["n_tokens"] for b in timed), "seconds": dt,
            "flops": model_flops(hf, seq_len, steps * MICRO * seq_len, sum(b["n_masked"] for b in timed))}


def arm_roberta_ds(shards: Path, shape: str, seq_len: int, steps: int) -> dict:
    from roberta_ds import cli_args, records
    from roberta_ds.build import build_run
    from roberta_ds.config import RunConfig
    from roberta_ds.trainer import Trainer

    out = Path(tempfile.mkdtemp(prefix="throughput_"))
    argv = ["--ds_config", str(ROOT / "ds_configs" / "zero2.json"), "--data_dir", str(shards), "--output_dir",
            str(out), "--max_steps", str(steps + 2), "--log_steps", "2", "--save_steps", str(10**6),
            "--max_seq_length", str(seq_len), "--ds", f"train_micro_batch_size_per_gpu={MICRO}",
            "--ds", "scheduler.params.warmup_num_steps=1"]
    if shape == "256x4":
        argv += ["--model_size", "tiny", "--hidden_size", "256", "--num_hidden_layers", "4",
                 "--num_heads", "4", "--intermediate_size", "1024"]
    else:
        argv += ["--model_size", shape]
    cfg = cli_args.parse(RunConfig, argv, "bench", "bench")
    run = build_run(cfg)
    Trainer(run).train()
    hf = run.hf_config
    windows = [w for w in records.windows(records.read_metrics(out)) if w.step > 2]  # steps 3.. (no start-up)
    seconds = sum(w.window_steps * MICRO / w.samples_per_s for w in windows)
    tokens = sum(w.tokens_per_s * w.window_steps * MICRO / w.samples_per_s for w in windows)
    masked = sum(w.window_masked_tokens for w in windows)
    n_steps = sum(w.window_steps for w in windows)
    return {"useful_tokens": tokens, "seconds": seconds,
            "flops": model_flops(hf, seq_len, n_steps * MICRO * seq_len, masked)}


ARMS = {
    "seed-summary": lambda s, shape, L, n: arm_seed(s, shape, L, n, summary=True),
    "seed-full": lambda s, shape, L, n: arm_seed(s, shape, L, n, summary=False),
    "run_mlm": arm_run_mlm,
    "bare-step": arm_bare_step,
    "roberta-ds": arm_roberta_ds,
}


def run_arm(arm: str, shards: Path, shape: str, seq_len: int, steps: int) -> dict:
    """One arm in a fresh process: its result and its peak RSS."""
    cmd = [sys.executable, __file__, "--_arm", arm, "--shards", str(shards), "--shapes", shape,
           "--lengths", str(seq_len), "--steps", str(steps)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode != 0:
        raise SystemExit(f"arm {arm} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=Path, required=True, help="inews packed at --max_seq_length 512")
    ap.add_argument("--shapes", default="tiny,256x4", help=f"comma-separated, of {sorted(SHAPES)}")
    ap.add_argument("--lengths", default="128,512")
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps per arm (plus 2 warm-up)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--_arm", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._arm:  # inside the subprocess
        res = ARMS[a._arm](a.shards, a.shapes, int(a.lengths), a.steps)
        res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return

    ceiling = matmul_ceiling()
    table = []
    for shape in a.shapes.split(","):
        for L in (int(x) for x in a.lengths.split(",")):
            arms = (["seed-summary", "seed-full"] if L == 512 else []) + ["run_mlm", "bare-step", "roberta-ds"]
            runs: dict[str, list[dict]] = {arm: [] for arm in arms}
            for _ in range(a.repeats):  # interleaved
                for arm in arms:
                    runs[arm].append(run_arm(arm, a.shards, shape, L, a.steps))
            for arm, rs in runs.items():
                tps = statistics.median(r["useful_tokens"] / r["seconds"] for r in rs)
                fps = statistics.median(r["flops"] / r["seconds"] for r in rs)
                table.append({"shape": shape, "L": L, "arm": arm, "useful_tokens_per_s": tps, "model_flops_per_s": fps,
                              "mfu": fps / ceiling, "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
                              "repeats": len(rs)})
    print(f"fp32 matmul ceiling (torch.mm 2048^2, median of 5): {ceiling / 1e9:.1f} GFLOP/s; micro batch {MICRO}, "
          f"{a.steps} timed steps per arm, median of {a.repeats} interleaved repeats")
    print(f"{'shape':>6} {'L':>4} {'arm':>13} {'useful tok/s':>13} {'GFLOP/s':>8} {'MFU':>6} {'peak RSS MiB':>13} "
          f"{'roberta-ds / arm':>17}")
    for row in table:
        ours = next(r for r in table if r["shape"] == row["shape"] and r["L"] == row["L"] and r["arm"] == "roberta-ds")
        print(f"{row['shape']:>6} {row['L']:>4} {row['arm']:>13} {row['useful_tokens_per_s']:>13,.0f} "
              f"{row['model_flops_per_s'] / 1e9:>8.1f} {row['mfu']:>6.1%} {row['peak_rss_mib']:>13.0f} "
              f"{ours['useful_tokens_per_s'] / row['useful_tokens_per_s']:>16.2f}x")
    print(json.dumps({"ceiling_flops_per_s": ceiling, "rows": table}, indent=1))


if __name__ == "__main__":
    main()
