"""Time to quality: held-out MLM loss against wall time, roberta-ds against a run_mlm-style loop, same run.

    python bench/time_to_quality.py [--budget 12m] [--tokenizer_path VOCAB]  (default: a vocab built from inews)

Both arms train the same architecture on the inews corpus packed at 128 tokens for the same wall-time
budget, and are evaluated on the same held-out sequences with the same masks (the validation split
of the packed shards, 15 % masking with the fixed evaluation seed, ``--eval_sequences`` sequences):

  roberta-ds  the real trainer and DeepSpeed engine (``launcher/pretrain.py``, one process) with the
              short-run recipe (``ds_configs/zero2_short_run.json`` + the recipe flags) and ``--time_budget``:
              its lr schedule follows the clock. Evaluated every ``--every`` of its budget clock (which
              includes those evaluations: a handicap of a few seconds per point for this arm).
  reference   a Hugging Face run_mlm-style loop: every training document tokenized with [CLS]/[SEP],
              concatenated and cut into 128-token blocks (``group_texts``), shuffled each epoch,
              ``DataCollatorForLanguageModeling`` (15 %, 80/10/10), the full-vocabulary LM head,
              ``torch.optim.AdamW`` lr 5e-4, batch 32, clipping 1.0, dropout 0.1 (transformers'
              defaults), and a linear decay to 0 at the end of the budget (generous: run_mlm users must
              guess a step count). Its clock stops while it is evaluated.

Also printed: the unigram line (the held-out loss of a model that learned token frequencies but no
context), which every loss reads against. Writes ``--out`` JSON and, with matplotlib, a PNG.
Run it alone on the machine: both arms are timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from roberta_ds.training.loop.schedule import parse_duration  # noqa: E402

SEQ_LEN = 128
RECIPE_CONFIG = ROOT / "ds_configs" / "zero2_short_run.json"
RECIPE_FLAGS = ["--model_size", "tiny", "--dropout", "0", "--position_init", "sinusoid", "--mask_prob", "0.15"]
"""The short-run recipe's trainer flags (README: "The short-run recipe"); the engine half is RECIPE_CONFIG."""


def default_vocab(work: Path) -> str:
    """No --tokenizer_path: a 21,128-id WordPiece vocab built from inews (as the demo does), once per work dir."""
    out = work / "tokenizer"
    if not (out / "tokenizer.json").exists():
        subprocess.run([sys.executable, "-m", "data_tools", "build-vocab", "--format", "inews", "--output", str(out),
                        "--vocab_size", "21128"], cwd=ROOT, check=True)
    return str(out)


def pack(work: Path, tokenizer_path: str) -> Path:
    out = work / "shards"
    if not (out / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "data_tools", "pack", "--format", "inews", "--output", str(out),
                        "--tokenizer_path", tokenizer_path, "--max_seq_length", str(SEQ_LEN), "--val_fraction", "0.02",
                        "--wwm", "--workers", "2"], cwd=ROOT, check=True)
    return out


def run_ours(shards: Path, work: Path, budget: str, every: str, eval_sequences: int, extra: list[str],
             ds_config: Path) -> list[dict]:
    out = work / "ours"
    cmd = [sys.executable, "launcher/pretrain.py", "--ds_config", str(ds_config), "--data_dir", str(shards),
           "--output_dir", str(out), *RECIPE_FLAGS, *extra, "--time_budget", budget, "--eval_time", every,
           "--eval_max_sequences", str(eval_sequences), "--log_steps", "100", "--save_steps", "1000000000"]
    print("roberta-ds arm:", " ".join(cmd), flush=True)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    subprocess.run(cmd, cwd=ROOT, check=True)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    summary = json.loads((out / "summary.json").read_text())
    points = [{"minutes": e["elapsed_s"] / 60, "loss": e["loss"], "accuracy": e["accuracy"], "step": e["step"],
               "tokens_seen": e["tokens_seen"], "collapse": e.get("collapse")} for e in records if e["kind"] == "eval"]
    # The final evaluation runs after the loop, at the clock's final reading.
    points[-1]["minutes"] = summary["elapsed_s"] / 60
    return points


def train_documents(shards: Path) -> list[str]:
    """The normalised texts of the documents in the shards' training split (same reader and hash as pack)."""
    from data_tools.normalize import normalize
    from data_tools.tokenize_worker import doc_hash
    from data_tools.readers import ReaderConfig, ReadStats, read_documents

    train = set(np.load(shards / "train" / "documents.npy").tolist())
    docs, seen = [], set()
    for d in read_documents(ReaderConfig(format="inews"), ReadStats()):
        text, _ = normalize(d.text, True)
        h = doc_hash(text) if text else None
        if h in train and h not in seen:
            seen.add(h)
            docs.append(text)
    return docs


def run_reference(shards: Path, model_cfg, budget_s: float, every_s: float, eval_sequences: int,
                  lr: float = 5e-4, batch: int = 32, seed: int = 42) -> list[dict]:
    from transformers import DataCollatorForLanguageModeling

    from roberta_ds.reading.data import Layout, ShardStream
    from roberta_ds.training.observe.evaluation import evaluate
    from roberta_ds.reading.masking import EVAL_MASK_SEED
    from roberta_ds.training.model import SparseMaskedLM, build_model, roberta_config
    from roberta_ds.shard_format import read_manifest
    from roberta_ds.tokenizer import load_tokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    manifest = read_manifest(shards)
    tok = load_tokenizer(shards / "tokenizer")
    # run_mlm: tokenize every document (with [CLS]/[SEP]), concatenate, cut into blocks, drop the remainder.
    ids = tok(train_documents(shards))["input_ids"]
    flat = np.fromiter((t for doc in ids for t in doc), dtype=np.int64)
    blocks = torch.from_numpy(flat[: len(flat) // SEQ_LEN * SEQ_LEN].reshape(-1, SEQ_LEN))
    print(f"reference arm: {len(ids):,} training documents -> {len(blocks):,} blocks of {SEQ_LEN}", flush=True)
    model = build_model(roberta_config(model_cfg, manifest.tokenizer, SEQ_LEN), seed).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    eval_stream = ShardStream(shards, manifest, "validation", SEQ_LEN, EVAL_MASK_SEED, False)
    layout = Layout(micro_batch=32, grad_accum=1, world_size=1, rank=0)
    wrapper = SparseMaskedLM(model)

    def held_out(clock: float, step: int) -> dict:
        model.eval()
        res = evaluate(wrapper, eval_stream, layout, eval_sequences, torch.device("cpu"))
        model.train()
        print(f"reference {clock / 60:5.2f} min, step {step}: held-out loss {res['loss']:.4f}", flush=True)
        return {"minutes": clock / 60, "loss": res["loss"], "accuracy": res["accuracy"], "step": step,
                "tokens_seen": step * batch * SEQ_LEN, "collapse": res.get("collapse")}

    points = [held_out(0.0, 0)]
    g = torch.Generator().manual_seed(seed)
    clock, step, next_eval = 0.0, 0, every_s
    order = torch.randperm(len(blocks), generator=g)
    pos = 0
    while clock < budget_s:
        t0 = time.perf_counter()
        if pos + batch > len(order):
            order, pos = torch.randperm(len(blocks), generator=g), 0
        rows = [{"input_ids": blocks[i]} for i in order[pos : pos + batch].tolist()]
        pos += batch
        for group in opt.param_groups:  # linear decay to 0 at the end of the budget
            group["lr"] = lr * max(0.0, 1.0 - clock / budget_s)
        loss = model(**collator(rows)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        clock += time.perf_counter() - t0
        if clock >= next_eval or clock >= budget_s:
            points.append(held_out(clock, step))
            next_eval += every_s
    return points


def loss_at(points: list[dict], minute: float) -> float | None:
    """The held-out loss of the last evaluation at or before ``minute`` (+2 % slack for clock granularity)."""
    best = None
    for p in points:
        if p["minutes"] <= minute * 1.02 + 1e-9:
            best = p["loss"]
    return best


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: PNG not drawn")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for name, color in (("roberta-ds", "C0"), ("reference", "C1")):
        pts = result["arms"].get(name)
        if pts:
            ax.plot([p["minutes"] for p in pts], [p["loss"] for p in pts], marker="o", color=color, label=name)
    ax.axhline(result["unigram_nats"], color="0.4", ls=":", label=f"unigram line {result['unigram_nats']:.2f}")
    ax.set_ylim(top=max(result["unigram_nats"] + 1.0, 7.5), bottom=None)
    ax.set_xlabel("wall time (minutes)")
    ax.set_ylabel("held-out masked-LM loss (nats per masked token)")
    ax.set_title(f"time to quality, inews @128: {result['model']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="12m", help="wall-time budget per arm (default 12m)")
    p.add_argument("--every", default="3m", help="evaluate every this much wall time")
    p.add_argument("--tokenizer_path", default=None,
                   help="vocab.txt or tokenizer directory, e.g. the standard Chinese BERT vocab (default: one built "
                        "from inews with data_tools build-vocab)")
    p.add_argument("--work", default="runs/bench_ttq", help="working directory (shards are reused)")
    p.add_argument("--eval_sequences", type=int, default=1024, help="held-out sequences per evaluation")
    p.add_argument("--arms", default="roberta-ds,reference", help="which arms to run")
    p.add_argument("--ds_config", default=str(RECIPE_CONFIG), help="the roberta-ds arm's DeepSpeed config")
    p.add_argument("--ours", default="", help="extra flags for the roberta-ds arm (ablations), one string")
    p.add_argument("--out", default=None, help="JSON path (default WORK/time_to_quality.json)")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    budget_s, every_s = parse_duration(args.budget), parse_duration(args.every)
    shards = pack(work, args.tokenizer_path or default_vocab(work))
    from roberta_ds.training.model import ModelConfig
    from roberta_ds.shard_format import read_manifest

    unigram = read_manifest(shards).unigram_nats
    extra = args.ours.split()
    model_args = dict(zip(RECIPE_FLAGS[::2], RECIPE_FLAGS[1::2]))
    model_args.update(dict(zip(extra[::2], extra[1::2])))
    # The reference arm gets the roberta-ds arm's architecture (the recipe's flags, then --ours overrides).
    shape = {k: int(model_args[f"--{k}"]) for k in ("hidden_size", "num_hidden_layers", "num_heads",
                                                    "intermediate_size") if f"--{k}" in model_args}
    model_cfg = ModelConfig(model_size=model_args["--model_size"], **shape)
    arms = {}
    wanted = args.arms.split(",")
    if "roberta-ds" in wanted:
        arms["roberta-ds"] = run_ours(shards, work, args.budget, args.every, args.eval_sequences, extra,
                                      Path(args.ds_config))
    if "reference" in wanted:
        arms["reference"] = run_reference(shards, model_cfg, budget_s, every_s, args.eval_sequences)
    marks = [every_s / 60 * k for k in range(1, int(round(budget_s / every_s)) + 1)]
    arch = model_cfg.architecture()
    result = {"budget": args.budget, "unigram_nats": unigram,
              "model": f"{arch['hidden_size']} hidden x {arch['num_hidden_layers']} layers, "
                       f"{arch['num_attention_heads']} heads, FFN {arch['intermediate_size']}",
              "eval_sequences": args.eval_sequences, "ours_flags": RECIPE_FLAGS + extra,
              "ds_config": str(args.ds_config), "arms": arms,
              "at_minutes": {f"{m:g}": {k: loss_at(v, m) for k, v in arms.items()} for m in marks}}
    print(f"\nheld-out loss (nats per masked token; {args.eval_sequences} validation sequences, 15 % masking, fixed "
          f"seed) against wall time; unigram line {unigram:.4f}")
    names = list(arms)
    two = len(names) == 2
    print(f"{'minutes':>8} " + " ".join(f"{n:>12}" for n in names) + (f" {'difference':>11}" if two else ""))
    for m in marks:
        vals = [loss_at(arms[n], m) for n in names]
        row = f"{m:8g} " + " ".join(f"{v:12.4f}" if v is not None else f"{'-':>12}" for v in vals)
        if two and None not in vals:
            row += f" {vals[0] - vals[1]:+11.4f}"
        print(row)
    for n in names:
        last = arms[n][-1]
        col = last.get("collapse") or {}
        print(f"{n}: final {last['loss']:.4f} at {last['minutes']:.2f} min, step {last['step']}, "
              f"{last['tokens_seen']:,} tokens, {unigram - last['loss']:.3f} nats below unigram, "
              f"accuracy {last['accuracy']:.4f}, token cosine {col.get('token_cosine', float('nan')):.3f}")
    out = Path(args.out) if args.out else work / "time_to_quality.json"
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
