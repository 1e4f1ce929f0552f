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
    "did_not_learn": "a run whose test predictions are all one class, or whose accuracy is at most the majority "
                     "class' accuracy m plus 2 binomial standard errors, 2 * sqrt(m (1 - m) / test examples)",
    "gain_measured": "the gain is reported when every seed's run of both arms learned, or when its mean over the seeds "
                     "is more than 2 standard errors (std / sqrt(seeds)) from zero; otherwise 'not measured'",
    "grid": "with --grid, each arm and seed is fine-tuned at every (batch size, learning rate) of the grid and the "
            "setting with the best test (dev) accuracy is kept: the cells summarise those best runs over the seeds "
            "(CLUE's protocol)",
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
    predict: list[Example] = field(default_factory=list)
    """Examples without labels (their label None) to predict with each arm's best run (a CLUE test file)."""


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
        from roberta_ds.training.engine.checkpoint import export_checkpoint

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
              workdir: Path, setting: tuple[int, float, int], predict: _Features | None = None) -> dict:
    """One arm, one seed, one (batch size, lr, steps) ``setting`` (BudgetConfig.settings and .steps; the weight
    decay is the budget's): transformers.Trainer with AdamW, linear warmup over 10 % of the steps then linear decay,
    gradient clipping at 1.0; then the test set's predictions ("predictions", and "predict_predictions" for
    ``predict``: label ids)."""
    batch_size, lr, max_steps = setting
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    args = TrainingArguments(
        output_dir=str(workdir), max_steps=max_steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=max(64, batch_size), learning_rate=lr,
        weight_decay=budget.weight_decay, warmup_steps=0.1, lr_scheduler_type="linear", max_grad_norm=1.0,
        seed=seed, data_seed=seed, logging_steps=max(1, max_steps // 10), save_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer))
    trainer.remove_callback(PrinterCallback)
    t0 = time.perf_counter()
    trainer.train()
    train_time = time.perf_counter() - t0
    preds = np.asarray(trainer.predict(test).predictions).argmax(-1).tolist()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    extra = {"predict_predictions": np.asarray(trainer.predict(predict).predictions).argmax(-1).tolist()} if predict else {}
    return {**classification_metrics(test.labels, preds), "predictions": preds, **extra,
            "batch_size": batch_size, "lr": lr, "max_steps": max_steps,
            "final_train_loss": float(logged[-1]) if logged else float("nan"),
            "final_train_loss_definition": "Trainer's mean training loss over its last logging window "
                                           "(the last 10 % of the steps)",
            "train_time_s": train_time, "epochs": max_steps * batch_size / len(train)}


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation, min and max (DEFINITIONS["spread"])."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": len(v)}


def did_not_learn(predictions: list[int], accuracy: float, majority: float) -> str | None:
    """Why a run did not learn (DEFINITIONS["did_not_learn"]), or None when it did."""
    n = len(predictions)
    if len(set(predictions)) <= 1:
        return "predicts one class"
    bar = majority + 2 * math.sqrt(majority * (1 - majority) / n)
    if accuracy <= bar:
        return f"accuracy {accuracy:.4f} within noise of the majority class ({majority:.4f} + 2 standard errors = {bar:.4f})"
    return None


def best_runs(runs: list[dict]) -> dict[tuple[str, int], dict]:
    """(arm, seed) -> the run with the best test accuracy over the settings (the grid's; one setting otherwise)."""
    best: dict[tuple[str, int], dict] = {}
    for r in runs:
        key = (r["arm"], r["seed"])
        if key not in best or r["accuracy"] > best[key]["accuracy"]:
            best[key] = r
    return best


def summarize(runs: list[dict]) -> dict:
    """Per training share: each arm's metrics over the seeds (each seed's best setting), whether each arm learned, and
    the per-seed gain with whether it is measured (DEFINITIONS)."""
    out = {}
    for fraction in sorted({r["train_fraction"] for r in runs}):
        best = best_runs([r for r in runs if r["train_fraction"] == fraction])
        arms = sorted({arm for arm, _ in best}, key=["pretrained", "scratch"].index)
        seeds = sorted({seed for _, seed in best})
        row: dict = {}
        for arm in arms:
            chosen = [best[arm, s] for s in seeds]
            row[arm] = {m: spread([r[m] for r in chosen]) for m in ("accuracy", "macro_f1")}
            row[arm]["did_not_learn"] = {str(r["seed"]): r["did_not_learn"] for r in chosen if r["did_not_learn"]}
            if len({(r["batch_size"], r["lr"]) for r in runs}) > 1:
                row[arm]["settings"] = [{k: r[k] for k in ("seed", "batch_size", "lr", "max_steps")} for r in chosen]
        if len(arms) == 2:
            row["gain"] = {m: spread([best["pretrained", s][m] - best["scratch", s][m] for s in seeds])
                           for m in ("accuracy", "macro_f1")}
            row["gain_measured"] = gain_status(row)
        row["train_examples"] = next(iter(best.values()))["train_examples"]
        out[f"{fraction:g}"] = row
    return out


def gain_status(row: dict) -> str:
    """'measured', 'measured (outside the seeds' spread)' or 'not measured: ...' (DEFINITIONS["gain_measured"])."""
    failed = {arm: sorted(row[arm]["did_not_learn"]) for arm in ("pretrained", "scratch") if row[arm]["did_not_learn"]}
    if not failed:
        return "measured"
    g = row["gain"]["accuracy"]
    if g["n"] > 1 and g["std"] > 0 and abs(g["mean"]) > 2 * g["std"] / math.sqrt(g["n"]):
        return "measured (outside the seeds' spread)"
    return "not measured: " + "; ".join(f"{arm} did not learn (seed {', '.join(seeds)})" for arm, seeds in failed.items())


def run(encoder: EncoderConfig, budget: BudgetConfig, tasks: list[Task], progress=print) -> dict:
    """Every task x training share x seed x setting x arm under the same budget; the result as one dict.
    ``progress`` gets a line per fine-tuning run."""
    with tempfile.TemporaryDirectory(prefix="roberta-ds-probe-") as tmp:
        workdir = Path(tmp)
        source = _source(encoder, budget, workdir)
        arms = [a for a in ("pretrained", "scratch") if a in budget.arms and (a == "scratch" or source.model_dir)]
        if not arms:
            raise ValueError("--arms pretrained with --model none: no arm to fine-tune (pass a model, or --arms scratch)")
        results = {task.name: _run_task(task, source, arms, budget, workdir, progress) for task in tasks}
    config = source.config.to_dict()
    first = results[tasks[0].name]
    top = first["summary"][f"{max(budget.fractions):g}"]
    measured = top.get("gain_measured", "").startswith("measured")
    return {
        "model": encoder.model, "architecture_from": source.architecture_from, "fine_tuning": "transformers.Trainer",
        "architecture": {k: config[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                "intermediate_size", "vocab_size")},
        "budget": {"max_steps": budget.max_steps, "num_train_epochs": budget.epochs, "batch_size": budget.batch_size,
                   "lr": budget.lr, "max_length": budget.max_length, "seed": budget.seed, "seeds": budget.seeds,
                   "train_fractions": budget.fractions, "arms": arms,
                   "grid": [{"batch_size": b, "lr": lr} for b, lr in budget.settings()] if budget.grid else None},
        "tasks": results,
        # The first task at the largest share, as earlier probe.json files had it (means over the seeds).
        "labels": first["labels"], "train_examples": first["train_examples"], "test_examples": first["test_examples"],
        "split": first["split"], "input": first["input"], "majority_accuracy": first["majority_accuracy"],
        "arms": {arm: {m: top[arm][m]["mean"] for m in ("accuracy", "macro_f1")} for arm in arms},
        "gain": {m: top["gain"][m]["mean"] for m in ("accuracy", "macro_f1")} if "gain" in top and measured else None,
        "gain_measured": top.get("gain_measured"),
        "definitions": DEFINITIONS,
    }


def _run_task(task: Task, source: _Source, arms: list[str], budget: BudgetConfig, workdir: Path, progress) -> dict:
    labels = sorted({e[-1] for e in task.train})
    unseen = sorted({e[-1] for e in task.test} - set(labels))
    if unseen:
        raise ValueError(f"{task.name} task: test labels {unseen} never occur in the training data")
    ids = {y: i for i, y in enumerate(labels)}
    test = _Features(source.tokenizer, task.test, ids, budget.max_length)
    train_all = _Features(source.tokenizer, task.train, ids, budget.max_length)
    predict = _Features(source.tokenizer, [(*e[:-1], labels[0]) for e in task.predict], ids, budget.max_length) \
        if task.predict else None
    counts = np.bincount([ids[e[-1]] for e in task.train], minlength=len(labels))
    majority = float(np.mean([ids[e[-1]] == int(counts.argmax()) for e in task.test]))
    runs, predicted = [], []
    for fraction in budget.fractions:
        for seed in budget.seeds:
            train = train_all.subset(fraction, seed)
            for batch_size, lr in budget.settings():
                setting = (batch_size, lr, budget.steps(batch_size, len(train)))
                for arm in arms:
                    r = fine_tune(source.classifier(arm, labels, seed), source.tokenizer, train, test, budget, seed,
                                  workdir / "trainer", setting, predict)
                    why = did_not_learn(r.pop("predictions"), r["accuracy"], majority)
                    predicted.append(r.pop("predict_predictions", None))
                    runs.append({"arm": arm, "seed": seed, "train_fraction": fraction, "train_examples": len(train),
                                 **r, "did_not_learn": why})
                    progress(f"probe {task.name}, {fraction:g} of the training examples ({len(train):,}), seed {seed}, "
                             f"batch {batch_size}, lr {lr:g}, {setting[2]} steps, {arm}: accuracy {r['accuracy']:.4f}, "
                             f"macro-F1 {r['macro_f1']:.4f}" + (f", did not learn: {why}" if why else "")
                             + f" ({r['train_time_s']:.0f} s)")
    out = {"labels": labels, "train_examples": len(task.train), "test_examples": len(task.test),
           "split": task.split, "input": task.input, "majority_accuracy": majority,
           "summary": summarize(runs), "runs": runs}
    if predict is not None:
        # each arm's best run over every share, seed and setting predicts the unlabelled examples
        out["predictions"] = {}
        for arm in arms:
            i = max((i for i, r in enumerate(runs) if r["arm"] == arm), key=lambda i: runs[i]["accuracy"])
            out["predictions"][arm] = {**{k: runs[i][k] for k in ("seed", "train_fraction", "batch_size", "lr",
                                                                   "max_steps", "accuracy")},
                                       "labels": [labels[j] for j in predicted[i]]}
    return out


if __name__ == "__main__":  # `python -m roberta_ds.downstream.probe` once ran the command; say where it went instead of doing nothing
    raise SystemExit("roberta_ds.downstream.probe is a library module: run the command `roberta-ds-probe` "
                     "(or `python launcher/probe.py` from a checkout); --help lists its flags")
