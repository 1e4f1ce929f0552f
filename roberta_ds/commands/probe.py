"""Did pretraining help? Fine-tune the exported model and the same classifier from scratch with
transformers.Trainer, same budget, on a single-text task and (from articles) a sentence-pair task.

    python launcher/probe.py --model RUN/final_model --train headlines.txt --test_fraction 0.2 --out probe.json
    python launcher/probe.py --model RUN/final_model --train inews:train --test inews:test --repeats 3 \
        --train_fractions 0.1,1
    python launcher/probe.py --model none --tokenizer SHARDS/tokenizer --model_size tiny --train T --test S
    python launcher/probe.py --model RUN/final_model --train tnews/train.json --test tnews/dev.json \
        --predict tnews/test.json --grid --repeats 3 --arms pretrained --max_length 128 --out tnews/probe.json

parse -> read the labelled data (data_tools.labelled) -> fine-tune every arm (roberta_ds.downstream.probe) -> table + JSON.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from data_tools import clue, labelled
from roberta_ds import cli_args
from roberta_ds.downstream import probe_config
from roberta_ds.training.observe.tables import PROBE_COLUMNS, probe_rows
from roberta_ds.commands import prog

DESCRIPTION = ("Fine-tune the exported model and the same classifier from scratch (transformers.Trainer, the same "
               "budget, seeds and data); report accuracy and macro-F1 of both, with their spread over seeds.")


@dataclass
class ProbeConfig:
    """The model to probe, the labelled data and the fine-tuning budget (the same for both arms)."""

    encoder: probe_config.EncoderConfig
    """The encoder to probe (or none) and its tokenizer."""
    data: labelled.LabelledConfig
    """Where the labelled examples come from and how the test set is made."""
    budget: probe_config.BudgetConfig
    """Steps, batch, learning rate, length and seed: the same for both arms."""
    out: str | None = None
    """Also write the JSON result here."""

    def settings(self) -> dict:
        """Every setting by its flag's name (the result's "settings")."""
        return {**asdict(self.encoder), **asdict(self.data), **asdict(self.budget), "out": self.out}


def table(res: dict) -> str:
    """One block per task: a row per training share and arm, and the gain, over the seeds; CLUE's reference score
    under a task it names."""
    b = res["budget"]
    seeds = b["seeds"]
    length = f"{b['num_train_epochs']:g} epochs" if b.get("num_train_epochs") else f"{b['max_steps']} steps"
    if b.get("grid"):
        sizes = ", ".join(str(x) for x in sorted({g["batch_size"] for g in b["grid"]}))
        lrs = ", ".join(f"{x:g}" for x in sorted({g["lr"] for g in b["grid"]}))
        how = f"the grid batch {{{sizes}}} x lr {{{lrs}}}, {length} each, best test accuracy per arm and seed"
    else:
        how = f"{length} x batch {b['batch_size']}, lr {b['lr']:g}"
    lines = [f"probe: fine-tuned with transformers.Trainer, {how}, {b['max_length']} tokens, the same for every arm; "
             f"seeds {', '.join(map(str, seeds))}"
             + (" (cells: mean ± standard deviation [min, max] over the seeds)" if len(seeds) > 1 else "")]
    for name, task in res["tasks"].items():
        rows = [list(PROBE_COLUMNS), *probe_rows(task)]
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        text = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
        lines += ["", f"{name} task: {task['train_examples']:,} train / {task['test_examples']:,} test examples, "
                      f"{len(task['labels'])} labels ({task['split']})", text[0], "-" * len(text[0]), *text[1:]]
        if name in probe_config.CLUE_REFERENCE:
            lines.append(f"reference: {probe_config.CLUE_REFERENCE_MODEL}: accuracy "
                         f"{probe_config.CLUE_REFERENCE[name] / 100:.4f}"
                         + ("" if b.get("grid") else " (under the grid: run with --grid to compare)"))
        for arm, pred in task.get("predictions", {}).items():
            lines.append(f"predictions of {arm}'s best run (seed {pred['seed']}, batch {pred['batch_size']}, lr "
                         f"{pred['lr']:g}, test accuracy {pred['accuracy']:.4f}): {pred['file']}")
    return "\n".join(lines)


def read_tasks(cfg: ProbeConfig) -> list:
    """The tasks the data settings name, read before any model is loaded: bad input fails fast."""
    from roberta_ds.downstream import probe

    if cfg.data.clue:
        c = labelled.load_clue(cfg.data, seed=cfg.budget.seed)
        return [probe.Task(c.name, c.train, c.test, split=c.split, input=c.input,
                           predict=c.predict.examples if c.predict else [])], c
    tasks = []
    for name in cfg.data.task_names():
        if name == "single":
            data = labelled.load(cfg.data, seed=cfg.budget.seed)
            tasks.append(probe.Task("single", data.train, data.test, split=data.split, input=data.input_counts()))
        else:
            train, test, how = labelled.load_pairs(cfg.data, seed=cfg.budget.seed)
            tasks.append(probe.Task("pair", train, test, split=how))
    return tasks, None


def write_predictions(res: dict, clue_split, out: str | None) -> None:
    """Each arm's predictions of --predict, in CLUE's submission format, next to --out (or in the working directory);
    the file's path replaces the labels in the result."""
    folder = Path(out).parent if out else Path(".")
    for name, task in res["tasks"].items():
        for arm, pred in task.get("predictions", {}).items():
            file = clue.SUBMISSION_NAMES.get(name, f"{name}_predict.json")
            path = folder / (file if arm == "pretrained" else f"{arm}_{file}")
            pred["file"] = str(clue.write_submission(path, clue_split.predict.ids, pred.pop("labels")))


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = cli_args.parse(ProbeConfig, argv, prog=prog("probe"), description=DESCRIPTION)
        from roberta_ds.downstream import probe  # after parsing: --help answers without importing torch

        tasks, clue_split = read_tasks(cfg)
        res = {**probe.run(cfg.encoder, cfg.budget, tasks, progress=lambda line: print(line, flush=True)),
               "settings": cfg.settings()}
        if clue_split is not None and clue_split.predict is not None:
            write_predictions(res, clue_split, cfg.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(res, indent=1, ensure_ascii=False)
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(text + "\n", encoding="utf-8")
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
