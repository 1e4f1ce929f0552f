"""Useful tokens per second: roberta-ds against what users would run instead, in the same run.

    python bench/train_throughput.py --shards S512 [--shapes tiny,256x4,small] [--lengths 128,512] [--steps 20]
        [--repeats 3] [--arms ...] [--micro 16] [--device cpu|cuda] [--precision fp32|bf16]

Every arm trains the same architecture on the inews corpus with the same micro batch (16 by default) for the same
number of optimizer steps (2 more untimed for warm-up), one process, each in its own subprocess (for its peak RSS);
repeats are interleaved (arm A, B, C, A, B, C, ...) and the median is printed. fp32 on the CPU by default; with
--precision bf16 the plain loops run under torch.autocast and roberta-ds with DeepSpeed's bf16 (bench/gpu_check.py
runs it that way on a GPU).

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
  roberta-ds-z0  the same with ZeRO stage 0 (`--ds zero_optimization.stage=0`): on one process ZeRO-1/2 partition
                 nothing, and their gradient bucketing is the difference between this arm and the one above
  roberta-ds-eager, -vocab64, -compile, -flash, -flex
                 the whole trainer with one model option: --attention eager, --vocab_multiple 64 (21,128 -> 21,184
                 rows), --compile (the compilation falls in the untimed first steps), --attention flash_attention_2
                 or flex_attention (CUDA only)

Useful tokens: non-padding tokens trained on. Model FLOPs per step, the usual training count (3 x forward):
6 x (encoder parameters without embeddings) x tokens + 12 x layers x hidden x L x tokens (attention scores and
values) + 6 x hidden x vocab x (rows through the LM head: every token for the full head, the masked ones for the
sparse head), tokens = all positions computed (padding included). MFU = model FLOP/s / the matmul ceiling
measured in this run at the same precision (F.linear of square matrices, 2048 on a CPU, 8192 on a GPU, median of
5; measured before the arms and after each round of them, the highest taken: a noisy machine measures low, never
high). Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = ("tiny", "256x4", "small", "base")
ARMS_AT_512 = ("seed-summary", "seed-full")
DEFAULT_ARMS = ("seed-summary", "seed-full", "run_mlm", "bare-step", "roberta-ds")
SUMMARY_CHARS = 80


@dataclass(frozen=True)
class Setting:
    """What every arm of one comparison shares besides the shape and length."""

    micro: int = 16
    device: str = "cpu"
    precision: str = "fp32"
    dropout: float = 0.1

    def autocast(self):
        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=torch.bfloat16)

    def sync(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()


def model_config(shape: str, tok, seq_len: int, dropout: float = 0.1):
    from roberta_ds.training.model import ModelConfig, roberta_config

    if shape == "256x4":
        cfg = ModelConfig("tiny", hidden_size=256, num_heads=4, intermediate_size=1024, num_hidden_layers=4,
                          dropout=dropout)
    else:
        cfg = ModelConfig(shape, dropout=dropout)  # a preset (roberta_ds.training.model.PRESETS)
    return cfg, roberta_config(cfg, tok, seq_len)


def model_flops(hf, L: int, tokens: int, head_rows: int) -> float:
    from roberta_ds.training.model.core import real_vocab_size

    # the tokenizer's rows: a padded vocabulary's extra rows are computed but are not model work
    h, layers, V = hf.hidden_size, hf.num_hidden_layers, real_vocab_size(hf)
    per_layer = 4 * h * h + 2 * h * hf.intermediate_size  # attention projections + feed-forward (weights)
    return 6 * per_layer * layers * tokens + 12 * layers * h * L * tokens + 6 * h * V * head_rows


def matmul_ceiling(device: str = "cpu", precision: str = "fp32") -> float:
    """FLOP/s of a square matrix product through F.linear, the op the model's layers run (2048 on a CPU, 1024 for
    bf16 on a CPU without native bf16, 8192 on a GPU), median of 5 timings of 4 (CPU) or 20 (GPU) products.

    F.linear, not torch.mm: on a CPU without native bf16 (AVX2 only, e.g. AMD EPYC Milan) torch.mm multiplies bf16
    on a fallback path at 0.3-1.3 GFLOP/s (one 2048 product took 54 s) while F.linear goes through oneDNN at
    15-19 GFLOP/s, and the model runs F.linear. On a GPU both are the same cuBLAS product."""
    import torch
    import torch.nn.functional as F

    n, reps = (8192, 20) if device == "cuda" else (2048, 4)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if device == "cpu" and dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        n = 1024  # 0.12 s a product there instead of 0.9 s
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    setting = Setting(device=device)
    F.linear(a, b)
    setting.sync()
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            F.linear(a, b)
        setting.sync()
        rates.append(reps * 2 * n**3 / (time.perf_counter() - t0))
    return statistics.median(rates)


def trainer_rate(run_dir: Path, micro: int, after_step: int = 2) -> dict:
    """Useful tokens, seconds, steps and masked tokens of a finished run's training windows after ``after_step``
    (start-up excluded), from its metrics.jsonl; micro = its global batch in sequences."""
    from roberta_ds.training.observe import records

    windows = [w for w in records.windows(records.read_metrics(run_dir)) if w.step > after_step]
    if not windows:
        raise SystemExit(f"{run_dir}: no training window after step {after_step}; run more steps")
    seconds = sum(w.window_steps * micro / w.samples_per_s for w in windows)
    return {"useful_tokens": sum(w.tokens_per_s * w.window_steps * micro / w.samples_per_s for w in windows),
            "seconds": seconds, "steps": sum(w.window_steps for w in windows),
            "masked": sum(w.window_masked_tokens for w in windows)}


# ---------------------------------------------------------------------------- arms (run in a subprocess each)
def _docs(n: int) -> list[str]:
    from data_tools.readers import ReaderConfig, ReadStats, read_documents

    return [d.text for _, d in zip(range(n), read_documents(ReaderConfig("inews"), ReadStats()))]


def _plain_loop(model, batches, steps: int, setting: Setting) -> float:
    import torch

    model = model.to(setting.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    t0 = None
    for i, batch in enumerate(batches[: steps + 2]):
        if i == 2:
            setting.sync()
            t0 = time.perf_counter()
        batch = {k: v.to(setting.device, non_blocking=True) for k, v in batch.items()}
        with setting.autocast():
            out = model(**batch)
        loss = out.loss if hasattr(out, "loss") else out[0] / batch["masked_labels"].numel()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    setting.sync()
    return time.perf_counter() - t0


def arm_seed(shards: Path, shape: str, seq_len: int, steps: int, setting: Setting, summary: bool) -> dict:
    from transformers import DataCollatorForLanguageModeling

    from roberta_ds.training.model import build_model
    from roberta_ds.shard_format import TOKENIZER_DIRNAME, read_manifest
    from roberta_ds.tokenizer import load_tokenizer

    m = read_manifest(shards)
    tok = load_tokenizer(shards / TOKENIZER_DIRNAME)
    _, hf = model_config(shape, m.tokenizer, 512, setting.dropout)
    micro = setting.micro
    docs = _docs((steps + 2) * micro)
    if summary:
        docs = [d[:SUMMARY_CHARS] for d in docs]
    enc = tok(docs, truncation=True, max_length=512, padding="max_length")
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    batches, real = [], 0
    for s in range(steps + 2):
        rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i]}
                for i in range(s * micro, (s + 1) * micro)]
        b = collator(rows)
        batches.append(b)
        if s >= 2:
            real += int(b["attention_mask"].sum())
    dt = _plain_loop(build_model(hf, seed=0).train(), batches, steps, setting)
    positions = steps * micro * 512
    return {"useful_tokens": real, "seconds": dt, "flops": model_flops(hf, 512, positions, positions)}


def arm_run_mlm(shards: Path, shape: str, seq_len: int, steps: int, setting: Setting) -> dict:
    from transformers import DataCollatorForLanguageModeling

    from roberta_ds.training.model import build_model
    from roberta_ds.shard_format import TOKENIZER_DIRNAME, read_manifest
    from roberta_ds.tokenizer import load_tokenizer

    m = read_manifest(shards)
    tok = load_tokenizer(shards / TOKENIZER_DIRNAME)
    _, hf = model_config(shape, m.tokenizer, seq_len, setting.dropout)
    micro = setting.micro
    need = (steps + 2) * micro * seq_len
    ids: list[int] = []
    for doc in _docs(20000):  # run_mlm's tokenize_function + group_texts
        ids += tok(doc)["input_ids"]
        if len(ids) >= need:
            break
    if len(ids) < need:
        raise SystemExit(f"run_mlm arm: the corpus has {len(ids):,} tokens, {need:,} needed; use fewer --steps")
    blocks = [ids[i : i + seq_len] for i in range(0, need, seq_len)]
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    batches = [collator([{"input_ids": b} for b in blocks[s * micro : (s + 1) * micro]]) for s in range(steps + 2)]
    dt = _plain_loop(build_model(hf, seed=0).train(), batches, steps, setting)
    positions = steps * micro * seq_len
    return {"useful_tokens": positions, "seconds": dt, "flops": model_flops(hf, seq_len, positions, positions)}


def _packed_batches(shards: Path, seq_len: int, n: int, micro: int = 16):
    from roberta_ds.reading.data import Layout, PretrainingData, ShardStream
    from roberta_ds.reading.masking import Masker, MaskingConfig
    from roberta_ds.shard_format import read_manifest

    m = read_manifest(shards)
    stream = ShardStream(shards, m, "train", seq_len, seed=0, shuffle=True)
    data = PretrainingData(stream, Layout(micro, 1, 1, 0), Masker(MaskingConfig(), m.tokenizer), 0)
    return m, [mbs[0] for mbs, _ in zip(data.steps(0), range(n))]


def arm_bare_step(shards: Path, shape: str, seq_len: int, steps: int, setting: Setting) -> dict:
    from roberta_ds.reading.data import model_inputs
    from roberta_ds.training.model import SparseMaskedLM, build_model

    m, raw = _packed_batches(shards, seq_len, steps + 2, setting.micro)
    _, hf = model_config(shape, m.tokenizer, seq_len, setting.dropout)
    batches = [model_inputs(b) for b in raw]
    dt = _plain_loop(SparseMaskedLM(build_model(hf, seed=0)).train(), batches, steps, setting)
    timed = raw[2:]
    return {"useful_tokens": sum(b["n_tokens"] for b in timed), "seconds": dt,
            "flops": model_flops(hf, seq_len, steps * setting.micro * seq_len, sum(b["n_masked"] for b in timed))}


def roberta_ds_argv(shards: Path, out: Path, shape: str, seq_len: int, steps: int, setting: Setting) -> list[str]:
    """launcher/pretrain.py's arguments for a timed run of ``steps`` (+2 warm-up) steps, nothing else: no
    checkpoint before the end, held-out evaluation on a handful of sequences."""
    argv = ["--ds_config", str(ROOT / "ds_configs" / "zero2.json"), "--data_dir", str(shards), "--output_dir",
            str(out), "--max_steps", str(steps + 2), "--log_steps", "2", "--save_steps", str(10**6),
            "--eval_max_sequences", str(setting.micro), "--max_seq_length", str(seq_len),
            "--ds", f"train_micro_batch_size_per_gpu={setting.micro}", "--ds", "scheduler.params.warmup_num_steps=1",
            "--dropout", str(setting.dropout)]
    if setting.precision == "bf16":
        argv += ["--ds", "bf16.enabled=true"]
    if shape == "256x4":
        argv += ["--model_size", "tiny", "--hidden_size", "256", "--num_hidden_layers", "4",
                 "--num_heads", "4", "--intermediate_size", "1024"]
    else:
        argv += ["--model_size", shape]
    return argv


def arm_roberta_ds(shards: Path, shape: str, seq_len: int, steps: int, setting: Setting, *extra: str) -> dict:
    from roberta_ds import cli_args
    from roberta_ds.training.build import build_run
    from roberta_ds.training.config import RunConfig
    from roberta_ds.training.trainer import Trainer

    out = Path(tempfile.mkdtemp(prefix="throughput_"))
    argv = roberta_ds_argv(shards, out, shape, seq_len, steps, setting) + list(extra)
    cfg = cli_args.parse(RunConfig, argv, "bench", "bench")
    run = build_run(cfg)
    Trainer(run).train()
    rate = trainer_rate(out, setting.micro)
    return {"useful_tokens": rate["useful_tokens"], "seconds": rate["seconds"],
            "flops": model_flops(run.hf_config, seq_len, rate["steps"] * setting.micro * seq_len, rate["masked"])}


OPTION_FLAGS = {"sdpa": [], "eager": ["--attention", "eager"], "flash": ["--attention", "flash_attention_2"],
                "flex": ["--attention", "flex_attention"], "vocab64": ["--vocab_multiple", "64"],
                "compile": ["--compile"]}
"""The model options (roberta_ds.training.model.settings) by name: an arm each here (roberta-ds-NAME), and the parts
of bench/gpu_check.py's option sets (joined by '+', e.g. flash+vocab64)."""

ARMS = {
    "seed-summary": lambda *a: arm_seed(*a, summary=True),
    "seed-full": lambda *a: arm_seed(*a, summary=False),
    "run_mlm": arm_run_mlm,
    "bare-step": arm_bare_step,
    "roberta-ds": arm_roberta_ds,
    "roberta-ds-z0": lambda *a: arm_roberta_ds(*a, "--ds", "zero_optimization.stage=0"),
    # roberta-ds-eager, -vocab64, -flash, -flex, -compile: the whole trainer with one model option
    **{f"roberta-ds-{name}": (lambda *a, flags=flags: arm_roberta_ds(*a, *flags))
       for name, flags in OPTION_FLAGS.items() if flags},
}


def run_arm(arm: str, shards: Path, shape: str, seq_len: int, steps: int, setting: Setting) -> dict:
    """One arm in a fresh process: its result and its peak RSS (and peak GPU memory on a GPU)."""
    cmd = [sys.executable, __file__, "--_arm", arm, "--shards", str(shards), "--shapes", shape,
           "--lengths", str(seq_len), "--steps", str(steps), "--micro", str(setting.micro), "--device", setting.device,
           "--precision", setting.precision, "--dropout", str(setting.dropout)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode != 0:
        raise SystemExit(f"arm {arm} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=Path, required=True, help="inews packed at --max_seq_length 512")
    ap.add_argument("--shapes", default="tiny,256x4", help=f"comma-separated, of {', '.join(SHAPES)}")
    ap.add_argument("--lengths", default="128,512")
    ap.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                    help=f"comma-separated, of {', '.join(ARMS)} (the seed arms run at 512 only)")
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps per arm (plus 2 warm-up)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--micro", type=int, default=16, help="micro batch (sequences per step), every arm")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--dropout", type=float, default=0.1, help="hidden and attention dropout, every arm")
    ap.add_argument("--_arm", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    setting = Setting(a.micro, a.device, a.precision, a.dropout)
    if a._arm:  # inside the subprocess
        res = ARMS[a._arm](a.shards, a.shapes, int(a.lengths), a.steps, setting)
        res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if a.device == "cuda":
            import torch

            res["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps(res))
        return
    chosen = a.arms.split(",")
    unknown = [x for x in chosen + a.shapes.split(",") if x not in ARMS and x not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown arm or shape {unknown}: arms are {', '.join(ARMS)}; shapes {', '.join(SHAPES)}")
    ref = "roberta-ds" if "roberta-ds" in chosen else chosen[-1]

    ceilings = [matmul_ceiling(a.device, a.precision)]  # the machine's pace drifts: measured again after each round
    table = []
    for shape in a.shapes.split(","):
        for L in (int(x) for x in a.lengths.split(",")):
            arms = [x for x in chosen if L == 512 or x not in ARMS_AT_512]
            runs: dict[str, list[dict]] = {arm: [] for arm in arms}
            for _ in range(a.repeats):  # interleaved
                for arm in arms:
                    runs[arm].append(run_arm(arm, a.shards, shape, L, a.steps, setting))
                ceilings.append(matmul_ceiling(a.device, a.precision))
            for arm, rs in runs.items():
                tps = statistics.median(r["useful_tokens"] / r["seconds"] for r in rs)
                fps = statistics.median(r["flops"] / r["seconds"] for r in rs)
                table.append({"shape": shape, "L": L, "arm": arm, "useful_tokens_per_s": tps, "model_flops_per_s": fps,
                              "peak_rss_mib": max(r["peak_rss_mib"] for r in rs), "repeats": len(rs)})
    ceiling = max(ceilings)  # the best the machine showed: an upper bound is what MFU divides by
    for row in table:
        row["mfu"] = row["model_flops_per_s"] / ceiling
    print(f"{a.precision} matmul ceiling on {a.device} (F.linear, median of 5, the highest of {len(ceilings)} "
          f"measurements between rounds; lowest {min(ceilings) / 1e9:.1f}): {ceiling / 1e9:.1f} GFLOP/s; micro batch "
          f"{a.micro}, dropout {a.dropout:g}, {a.steps} timed steps per arm, median of {a.repeats} interleaved repeats")
    print(f"{'shape':>6} {'L':>4} {'arm':>13} {'useful tok/s':>13} {'GFLOP/s':>8} {'MFU':>6} {'peak RSS MiB':>13} "
          f"{ref + ' / arm':>17}")
    for row in table:
        ours = next(r for r in table if r["shape"] == row["shape"] and r["L"] == row["L"] and r["arm"] == ref)
        print(f"{row['shape']:>6} {row['L']:>4} {row['arm']:>13} {row['useful_tokens_per_s']:>13,.0f} "
              f"{row['model_flops_per_s'] / 1e9:>8.1f} {row['mfu']:>6.1%} {row['peak_rss_mib']:>13.0f} "
              f"{ours['useful_tokens_per_s'] / row['useful_tokens_per_s']:>16.2f}x")
    print(json.dumps({"ceiling_flops_per_s": ceiling, "ceilings_flops_per_s": ceilings, "rows": table}, indent=1))


if __name__ == "__main__":
    main()
