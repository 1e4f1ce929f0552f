"""Downstream probe: did pretraining help? Fine-tune the exported model the way colleagues do (stock
``AutoTokenizer`` and ``AutoModelForSequenceClassification`` through ``transformers.Trainer``) and, with the same
architecture, tokenizer, seeds, data and step budget, the same classifier from random initialisation; report
accuracy and macro-F1 of both on the same test set, for each task, each share of the training data and each seed,
with the mean and spread over seeds.

Tasks: ``single`` classifies each text (inews: 3 news classes); ``pair`` is title-article matching (a title and an
article body: is this its article?), built from the same labelled articles (data_tools.labelled), so the
sentence-pair path of the hand-off runs every time.

The core only: it takes examples (Task). Reading labelled files is data_tools.labelled's job, and the command line
is launcher/probe.py, which composes the two. Labels are strings; their ids are the sorted order.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from roberta_ds.training.model import ModelConfig, roberta_config
from roberta_ds.downstream.probe_config import BudgetConfig, EncoderConfig  # noqa: F401 (re-exported)

DEFINITIONS = {
    "accuracy": "test examples whose argmax class is the gold label / test examples",
    "macro_f1": "unweighted mean over labels (present in gold or predictions) of per-label F1 = 2PR/(P+R), "
                "F1 = 0 where P+R = 0",
    "majority_accuracy": "accuracy of always predicting the most frequent training label",
    "budget": "optimizer steps x batch size, identical for every arm, share and seed",
    "spread": "over the fine-tuning seeds: mean, sample standard deviation (n - 1), min and max; the gain is "
              "pretrained - scratch for each seed (same seed, same training subset), then summarised the same way",
    "train_fraction": "share of the task's training examples fine-tuned on: a subset drawn with each seed, the same "
                      "for both arms",
}


Example = tuple  # (text, label) or (text, text_pair, label)


@dataclass
class Task:
    """Labelled examples to fine-tune and test on, and where they came from (reported as given)."""

    name: str
    """single (one text per example) or pair (two)."""
    train: list[Example]
    """(text, label) or (text, text_pair, label) examples to fine-tune on."""
    test: list[Example]
    """The same, to measure on; every label must occur in train."""
    split: str = ""
    """How train and test were obtained, in words."""
    input: dict = field(default_factory=dict)
    """What reading them counted (encodings, problems)."""


def encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int,
           text_pairs: list[str] | None = None) -> dict[str, list]:
    """The stock tokenizer call a colleague makes (truncation at max_length; pairs as two segments), unpadded:
    the collator pads each batch. Literal "[SEP]" in a headline is text, as in pretraining
    (data_tools.tokenize_worker.corpus_tokenizer); the [CLS]/[SEP] the tokenizer adds are inserted by id."""
    return dict(tokenizer(texts, text_pairs, max_length=max_length, truncation=True, split_special_tokens=True))


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
class _Features(torch.utils.data.Dataset):
    """Tokenized examples with their label ids, as Trainer reads a dataset."""

    def __init__(self, tokenizer, examples: list[Example], label_ids: dict[str, int], max_length: int) -> None:
        texts = [e[0] for e in examples]
        pairs = [e[1] for e in examples] if examples and len(examples[0]) == 3 else None
        self.enc = encode(tokenizer, texts, max_length, pairs)
        self.labels = [label_ids[e[-1]] for e in examples]

    def subset(self, fraction: float, seed: int) -> _Features:
        """A share of the examples, drawn with ``seed`` (the same for both arms), keeping their order; tokenized
        once for every share and seed."""
        if fraction >= 1:
            return self
        n = len(self.labels)
        keep = sorted(np.random.default_rng(seed).permutation(n)[: max(1, math.ceil(fraction * n))].tolist())
        out = _Features.__new__(_Features)
        out.enc = {k: [v[i] for i in keep] for k, v in self.enc.items()}
        out.labels = [self.labels[i] for i in keep]
        return out

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {**{k: v[i] for k, v in self.enc.items()}, "labels": self.labels[i]}


@dataclass
class _Source:
    """Where both arms' classifiers come from: a Hugging Face model directory (the export) or, with --model none,
    a config and tokenizer only."""

    tokenizer: PreTrainedTokenizerBase
    config: object
    """The encoder's transformers config."""
    model_dir: Path | None
    """The exported model the pretrained arm loads (None: no pretrained arm)."""
    architecture_from: str

    def classifier(self, arm: str, labels: list[str], seed: int):
        from transformers import AutoModelForSequenceClassification, set_seed

        set_seed(seed)  # the head's (and, from scratch, the encoder's) initialisation
        ids = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
               "label2id": {y: i for i, y in enumerate(labels)}}
        if arm == "pretrained":
            # transformers' load report lists the MLM head left out and the classifier head initialised: expected
            # here, and 18 lines per run
            from transformers.utils import logging as hf_logging

            level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            try:
                return AutoModelForSequenceClassification.from_pretrained(self.model_dir, **ids)
            finally:
                hf_logging.set_verbosity(level)
        config = type(self.config).from_dict({**self.config.to_dict(), **ids, "problem_type": None})
        return AutoModelForSequenceClassification.from_config(config)


def _source(encoder: EncoderConfig, budget: BudgetConfig, workdir: Path) -> _Source:
    from transformers import AutoConfig, AutoTokenizer

    from roberta_ds.tokenizer import POSITION_OFFSET, handoff_tokenizer, load_tokenizer, tokenizer_info

    if encoder.model == "none":
        tok = load_tokenizer(encoder.tokenizer)
        config = roberta_config(ModelConfig(model_size=encoder.model_size), tokenizer_info(tok, encoder.tokenizer),
                                budget.max_length)
        tok = handoff_tokenizer(tok, max_tokens=budget.max_length, token_types=config.type_vocab_size)
        return _Source(tok, config, None, f"--model_size {encoder.model_size}")
    model_dir = Path(encoder.model)
    if not (model_dir / "config.json").exists():  # a checkpoint: export it, as a colleague would receive it
        from roberta_ds.training.checkpoint import export_checkpoint

        try:
            model_dir = export_checkpoint(model_dir, workdir / "export")
        except (RuntimeError, OSError) as e:
            raise ValueError(f"--model {encoder.model}: {e}") from e
    tok = AutoTokenizer.from_pretrained(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    if encoder.tokenizer:
        conflicts = tokenizer_info(load_tokenizer(encoder.tokenizer), encoder.tokenizer).conflicts(
            tokenizer_info(tok, str(model_dir)))
        if conflicts:
            raise ValueError("--tokenizer differs from the model's tokenizer:\n  " + "\n  ".join(conflicts))
    positions = config.max_position_embeddings - POSITION_OFFSET
    if budget.max_length > positions:
        raise ValueError(f"--max_length {budget.max_length} exceeds the model's {positions} positions")
    return _Source(tok, config, model_dir, str(encoder.model))


def fine_tune(model, tokenizer, train: _Features, test: _Features, budget: BudgetConfig, seed: int,
              workdir: Path) -> dict:
    """One arm, one seed: transformers.Trainer with AdamW, linear warmup over 10 % of the steps then linear decay,
    gradient clipping at 1.0; then the test set's predictions."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    args = TrainingArguments(
        output_dir=str(workdir), max_steps=budget.max_steps, per_device_train_batch_size=budget.batch_size,
        per_device_eval_batch_size=max(64, budget.batch_size), learning_rate=budget.lr,
        weight_decay=budget.weight_decay, warmup_steps=0.1, lr_scheduler_type="linear", max_grad_norm=1.0,
        seed=seed, data_seed=seed, logging_steps=max(1, budget.max_steps // 10), save_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer))
    trainer.remove_callback(PrinterCallback)
    t0 = time.perf_counter()
    trainer.train()
    train_time = time.perf_counter() - t0
    preds = trainer.predict(test).predictions
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {**classification_metrics(test.labels, np.asarray(preds).argmax(-1).tolist()),
            "final_train_loss": float(logged[-1]) if logged else float("nan"),
            "final_train_loss_definition": "Trainer's mean training loss over its last logging window "
                                           "(the last 10 % of the steps)",
            "train_time_s": train_time, "epochs": budget.max_steps * budget.batch_size / len(train)}


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation, min and max (DEFINITIONS["spread"])."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": len(v)}


def summarize(runs: list[dict]) -> dict:
    """Per training share: each arm's metrics and the per-seed gain, over the seeds (DEFINITIONS["spread"])."""
    out = {}
    for fraction in sorted({r["train_fraction"] for r in runs}):
        at = [r for r in runs if r["train_fraction"] == fraction]
        arms = sorted({r["arm"] for r in at}, key=["pretrained", "scratch"].index)
        by = {(r["arm"], r["seed"]): r for r in at}
        row = {arm: {m: spread([r[m] for r in at if r["arm"] == arm]) for m in ("accuracy", "macro_f1")}
               for arm in arms}
        if len(arms) == 2:
            seeds = sorted({r["seed"] for r in at})
            row["gain"] = {m: spread([by["pretrained", s][m] - by["scratch", s][m] for s in seeds])
                           for m in ("accuracy", "macro_f1")}
        row["train_examples"] = at[0]["train_examples"]
        out[f"{fraction:g}"] = row
    return out


def run(encoder: EncoderConfig, budget: BudgetConfig, tasks: list[Task], progress=print) -> dict:
    """Every task x training share x seed x arm (only scratch with --model none) under the same budget; the result
    as one dict. ``progress`` gets a line per fine-tuning run."""
    with tempfile.TemporaryDirectory(prefix="roberta-ds-probe-") as tmp:
        workdir = Path(tmp)
        source = _source(encoder, budget, workdir)
        arms = (["pretrained"] if source.model_dir is not None else []) + ["scratch"]
        results = {}
        for task in tasks:
            labels = sorted({e[-1] for e in task.train})
            unseen = sorted({e[-1] for e in task.test} - set(labels))
            if unseen:
                raise ValueError(f"{task.name} task: test labels {unseen} never occur in the training data")
            ids = {y: i for i, y in enumerate(labels)}
            test = _Features(source.tokenizer, task.test, ids, budget.max_length)
            train_all = _Features(source.tokenizer, task.train, ids, budget.max_length)
            counts = np.bincount([ids[e[-1]] for e in task.train], minlength=len(labels))
            runs = []
            for fraction in budget.fractions:
                for seed in budget.seeds:
                    train = train_all.subset(fraction, seed)
                    for arm in arms:
                        r = fine_tune(source.classifier(arm, labels, seed), source.tokenizer, train, test, budget,
                                      seed, workdir / "trainer")
                        runs.append({"arm": arm, "seed": seed, "train_fraction": fraction,
                                     "train_examples": len(train), **r})
                        progress(f"probe {task.name}, {fraction:g} of the training examples ({len(train):,}), seed "
                                 f"{seed}, {arm}: accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f} "
                                 f"({r['train_time_s']:.0f} s)")
            results[task.name] = {
                "labels": labels, "train_examples": len(task.train), "test_examples": len(task.test),
                "split": task.split, "input": task.input,
                "majority_accuracy": float(np.mean([ids[e[-1]] == int(counts.argmax()) for e in task.test])),
                "summary": summarize(runs), "runs": runs,
            }
    config = source.config.to_dict()
    first = results[tasks[0].name]
    top = first["summary"][f"{max(budget.fractions):g}"]
    return {
        "model": encoder.model, "architecture_from": source.architecture_from, "fine_tuning": "transformers.Trainer",
        "architecture": {k: config[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                "intermediate_size", "vocab_size")},
        "budget": {"max_steps": budget.max_steps, "batch_size": budget.batch_size, "lr": budget.lr,
                   "max_length": budget.max_length, "seed": budget.seed, "seeds": budget.seeds,
                   "train_fractions": budget.fractions},
        "tasks": results,
        # The first task at the largest share, as earlier probe.json files had it (means over the seeds).
        "labels": first["labels"], "train_examples": first["train_examples"], "test_examples": first["test_examples"],
        "split": first["split"], "input": first["input"], "majority_accuracy": first["majority_accuracy"],
        "arms": {arm: {m: top[arm][m]["mean"] for m in ("accuracy", "macro_f1")} for arm in arms},
        "gain": {m: top["gain"][m]["mean"] for m in ("accuracy", "macro_f1")} if "gain" in top else None,
        "definitions": DEFINITIONS,
    }


if __name__ == "__main__":  # `python -m roberta_ds.downstream.probe` once ran the command; say where it went instead of doing nothing
    raise SystemExit("roberta_ds.downstream.probe is a library module: run the command `roberta-ds-probe` "
                     "(or `python launcher/probe.py` from a checkout); --help lists its flags")
