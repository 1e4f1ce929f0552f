"""Downstream probe: did pretraining help? Fine-tune a classifier from the pretrained encoder and,
with the same architecture, tokenizer, seed, data order, learning rate and step budget, from random
initialisation; report accuracy and macro-F1 of both on the same test set.

The core only: it takes (text, label) examples (Examples). Reading labelled files is
data_tools.labelled's job, and the command line is launcher/probe.py, which composes the two.
Labels are strings; their ids are the sorted order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, RobertaConfig, RobertaForSequenceClassification

from roberta_ds.cli_args import cli
from roberta_ds.model import PRESETS, ModelConfig, roberta_config

DEFINITIONS = {
    "accuracy": "test examples whose argmax class is the gold label / test examples",
    "macro_f1": "unweighted mean over labels (present in gold or predictions) of per-label F1 = 2PR/(P+R), "
                "F1 = 0 where P+R = 0",
    "majority_accuracy": "accuracy of always predicting the most frequent training label",
    "budget": "optimizer steps x batch size, identical for both arms",
}


@dataclass
class EncoderConfig:
    """The encoder to probe (or none) and its tokenizer."""

    model: str
    """RUN/final_model, a checkpoint directory, or 'none' (only the from-scratch arm)."""
    tokenizer: str | None = None
    """Tokenizer directory or vocab.txt (required with --model none; otherwise the model's)."""
    model_size: str = field(default="tiny", metadata=cli(choices=sorted(PRESETS)))
    """Architecture preset with --model none."""

    def __post_init__(self) -> None:
        problems = []
        if self.model == "none" and not self.tokenizer:
            problems.append("--model none needs --tokenizer DIR_OR_VOCAB (and --model_size) for the from-scratch arm")
        if self.model != "none" and not Path(self.model).is_dir():
            problems.append(f"--model {self.model}: no such directory (RUN/final_model, a checkpoint, or 'none')")
        if self.model_size not in PRESETS:
            problems.append(f"--model_size {self.model_size!r}: choose one of {sorted(PRESETS)}")
        if problems:
            raise ValueError("invalid probe model settings:\n  " + "\n  ".join(problems))


@dataclass
class BudgetConfig:
    """The fine-tuning budget: the same for both arms."""

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

    def __post_init__(self) -> None:
        problems = []
        for name in ("max_length", "max_steps", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"--{name} {getattr(self, name)}: must be >= 1")
        if self.max_length < 4:
            problems.append(f"--max_length {self.max_length}: must be >= 4")
        if not self.lr > 0:
            problems.append(f"--lr {self.lr}: must be > 0")
        if problems:
            raise ValueError("invalid probe budget:\n  " + "\n  ".join(problems))


@dataclass
class Examples:
    """Labelled examples to fine-tune and test on, and where they came from (reported as given)."""

    train: list[tuple[str, str]]
    """(text, label) pairs to fine-tune on."""
    test: list[tuple[str, str]]
    """(text, label) pairs to measure on; every label must occur in train."""
    split: str = ""
    """How train and test were obtained, in words."""
    input: dict = field(default_factory=dict)
    """What reading them counted (encodings, problems)."""


def encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    # Literal "[SEP]" in a headline is text, as in pretraining (data_tools.tokenize_worker.corpus_tokenizer);
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


def train_and_test(model, train: dict, test: dict, budget: BudgetConfig) -> dict:
    n = train["labels"].shape[0]
    g = torch.Generator().manual_seed(budget.seed)  # the same example order for both arms
    opt = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    warm = max(1, budget.max_steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (budget.max_steps - s) / max(1, budget.max_steps - warm))))
    torch.manual_seed(budget.seed)  # dropout
    model.train()
    t0, order, pos, losses = time.perf_counter(), torch.randperm(n, generator=g), 0, []
    for _ in range(budget.max_steps):
        if pos + budget.batch_size > n:
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos : pos + budget.batch_size]
        pos += budget.batch_size
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
            "train_time_s": train_time, "epochs": budget.max_steps * budget.batch_size / n}


def run(encoder: EncoderConfig, budget: BudgetConfig, examples: Examples) -> dict:
    """Both arms (only scratch with --model none) on the same examples and budget; the result as one dict."""
    from roberta_ds.saved_model import load_masked_lm
    from roberta_ds.tokenizer import load_tokenizer, tokenizer_info

    if encoder.model == "none":
        tokenizer = load_tokenizer(encoder.tokenizer)
        config = roberta_config(ModelConfig(model_size=encoder.model_size),
                                tokenizer_info(tokenizer, encoder.tokenizer), budget.max_length)
        encoder_state, arch_from = None, f"--model_size {encoder.model_size}"
    else:
        loaded = load_masked_lm(encoder.model)
        if encoder.tokenizer:
            conflicts = tokenizer_info(load_tokenizer(encoder.tokenizer), encoder.tokenizer).conflicts(
                loaded.tokenizer_info())
            if conflicts:
                raise ValueError("--tokenizer differs from the model's tokenizer:\n  " + "\n  ".join(conflicts))
        if budget.max_length > loaded.max_seq_length:
            raise ValueError(f"--max_length {budget.max_length} exceeds the model's {loaded.max_seq_length} positions")
        tokenizer, config = loaded.tokenizer, loaded.mlm.config
        encoder_state = {k: v.detach().clone() for k, v in loaded.mlm.roberta.state_dict().items()}
        arch_from = str(loaded.path)

    train_pairs, test_pairs = examples.train, examples.test
    labels = sorted({y for _, y in train_pairs})
    unseen = sorted({y for _, y in test_pairs} - set(labels))
    if unseen:
        raise ValueError(f"test labels {unseen} never occur in the training data")
    lid = {y: i for i, y in enumerate(labels)}

    def tensors(pairs):
        d = encode(tokenizer, [t for t, _ in pairs], budget.max_length)
        d["labels"] = torch.tensor([lid[y] for _, y in pairs])
        return d

    train, test = tensors(train_pairs), tensors(test_pairs)
    counts = np.bincount(train["labels"].numpy(), minlength=len(labels))
    majority = float((test["labels"] == int(counts.argmax())).float().mean())

    arms = {}
    if encoder_state is not None:
        arms["pretrained"] = train_and_test(_classifier(config, len(labels), encoder_state, budget.seed), train, test,
                                            budget)
    arms["scratch"] = train_and_test(_classifier(config, len(labels), None, budget.seed), train, test, budget)
    return {
        "model": encoder.model, "architecture_from": arch_from,
        "architecture": {k: config.to_dict()[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                             "intermediate_size", "vocab_size")},
        "labels": labels, "train_examples": len(train_pairs), "test_examples": len(test_pairs),
        "split": examples.split, "input": examples.input,
        "budget": {"max_steps": budget.max_steps, "batch_size": budget.batch_size, "lr": budget.lr,
                   "max_length": budget.max_length, "seed": budget.seed},
        "majority_accuracy": majority, "arms": arms,
        "gain": ({k: arms["pretrained"][k] - arms["scratch"][k] for k in ("accuracy", "macro_f1")}
                 if "pretrained" in arms else None),
        "definitions": DEFINITIONS,
    }


if __name__ == "__main__":  # `python -m roberta_ds.probe` once ran the command; say where it went instead of doing nothing
    raise SystemExit("roberta_ds.probe is a library module: run the command `roberta-ds-probe` "
                     "(or `python launcher/probe.py` from a checkout); --help lists its flags")
