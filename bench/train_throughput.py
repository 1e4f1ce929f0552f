"""Useful tokens per second: roberta-ds against the original approach, in the same run.

    python bench/train_throughput.py --shards SHARDS_512 [--model_size tiny] [--steps 30]

Both arms train the same architecture with micro batch 16 x 512 tokens on the inews corpus for the
same number of optimizer steps and count *real* (non-padding) tokens per second:

  baseline   the work we replace: each document tokenized on its own, truncated and padded to 512,
             transformers' DataCollatorForLanguageModeling (15 %, 80/10/10), the full-vocabulary LM
             head (RobertaForMaskedLM(labels=...)), torch.optim.AdamW in a plain loop.
  roberta-ds packed 512-token shards (data_tools pack), dynamic masking, the sparse LM head on masked
             positions only, through the DeepSpeed engine (ds_configs/zero2.json), as the trainer does.

Also printed: the fraction of the corpus' tokens each arm can ever see (truncation loses the rest).
The ratio is what matters; absolute numbers depend on the machine. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def baseline(docs: list[str], tokenizer, model_cfg, steps: int, micro: int, seq_len: int) -> dict:
    from transformers import DataCollatorForLanguageModeling

    from roberta_ds.model import build_model

    from roberta_ds.engine import device

    dev = device()
    model = build_model(model_cfg, seed=0).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-8)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    enc = tokenizer(docs, truncation=True, max_length=seq_len, padding="max_length")
    full = tokenizer(docs, add_special_tokens=True)["input_ids"]
    kept = sum(min(len(x), seq_len) for x in full) / sum(len(x) for x in full)
    real = 0
    torch.manual_seed(0)
    t0 = None
    for step in range(steps + 2):  # 2 warm-up steps, not timed
        if step == 2:
            t0 = time.perf_counter()
            real = 0
        rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i]}
                for i in range(step * micro, (step + 1) * micro)]
        batch = {k: v.to(dev) for k, v in collator(rows).items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        real += int(batch["attention_mask"].sum())
    dt = time.perf_counter() - t0
    return {"real_tokens_per_s": real / dt, "seconds": dt, "corpus_tokens_reachable": kept,
            "padding_fraction": 1 - real / (steps * micro * seq_len)}


def ours(shards: Path, model_cfg, steps: int, micro: int) -> dict:
    from roberta_ds import ds_config
    from roberta_ds.data import Layout, PretrainingData, ShardStream, model_inputs, to_device
    from roberta_ds.engine import build_engine, device, init_distributed
    from roberta_ds.masking import Masker, MaskingConfig
    from roberta_ds.model import SparseMaskedLM, build_model
    from roberta_ds.shard_format import read_manifest

    init_distributed()
    m = read_manifest(shards)
    cfg = ds_config.load_ds_config(ROOT / "ds_configs" / "zero2.json",
                                   [f"train_micro_batch_size_per_gpu={micro}", "scheduler.params.warmup_num_steps=1"])
    cfg = ds_config.resolve(cfg, total_steps=steps + 2, world_size=1)
    engine, _ = build_engine(SparseMaskedLM(build_model(model_cfg, seed=0)), cfg)
    stream = ShardStream(shards, m, "train", m.max_seq_length, seed=0, shuffle=True, shuffle_buffer=1000)
    data = PretrainingData(stream, Layout(micro, 1, 1, 0), Masker(MaskingConfig(), m.tokenizer), 0)
    real, t0 = 0, None
    for step, micro_batches in zip(range(steps + 2), data.steps(0)):
        if step == 2:
            t0 = time.perf_counter()
            real = 0
        for mb in micro_batches:
            loss_sum, _ = engine(**model_inputs(to_device(mb, device())))
            engine.backward(loss_sum / max(mb["n_masked"], 1), scale_wrt_gas=False)
            engine.step()
            real += mb["n_tokens"]
    dt = time.perf_counter() - t0
    return {"real_tokens_per_s": real / dt, "seconds": dt, "corpus_tokens_reachable": 1.0,
            "padding_fraction": 1 - real / (steps * micro * m.max_seq_length)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=Path, required=True, help="inews packed at --max_seq_length 512")
    ap.add_argument("--model_size", default="tiny")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--micro_batch", type=int, default=16)
    a = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from data_tools.readers import ReaderConfig, ReadStats, read_documents
    from roberta_ds.model import ModelConfig, roberta_config
    from roberta_ds.shard_format import TOKENIZER_DIRNAME, read_manifest
    from roberta_ds.tokenizer import load_tokenizer

    m = read_manifest(a.shards)
    tok = load_tokenizer(a.shards / TOKENIZER_DIRNAME)
    model_cfg = roberta_config(ModelConfig(a.model_size, dropout=0.1), m.tokenizer, m.max_seq_length)
    need = (a.steps + 2) * a.micro_batch
    docs = [d.text for _, d in zip(range(need), read_documents(ReaderConfig("inews"), ReadStats()))]
    res = {"baseline": baseline(docs, tok, model_cfg, a.steps, a.micro_batch, m.max_seq_length),
           "roberta-ds": ours(a.shards, model_cfg, a.steps, a.micro_batch)}
    print(f"{'arm':12} {'real tokens/s':>14} {'padding':>8} {'corpus reachable':>17}")
    for k, r in res.items():
        print(f"{k:12} {r['real_tokens_per_s']:14,.0f} {r['padding_fraction']:8.1%} {r['corpus_tokens_reachable']:17.1%}")
    ratio = res["roberta-ds"]["real_tokens_per_s"] / res["baseline"]["real_tokens_per_s"]
    print(f"roberta-ds / baseline real tokens per second: {ratio:.2f}x "
          f"(model {a.model_size}, micro batch {a.micro_batch} x {m.max_seq_length}, {a.steps} timed steps each)")
    print(json.dumps({**res, "ratio": ratio}, indent=1))


if __name__ == "__main__":
    main()
