"""Did pretraining help? Fine-tune the exported model and the same classifier from scratch with
transformers.Trainer, same budget, on a single-text task and (from articles) a sentence-pair task.

    python launcher/probe.py --model RUN/final_model --train headlines.txt --test_fraction 0.2 --out probe.json
    python launcher/probe.py --model RUN/final_model --train inews:train --test inews:test --repeats 3 \
        --train_fractions 0.1,1
    python launcher/probe.py --model none --tokenizer SHARDS/tokenizer --model_size tiny --train T --test S

parse -> read the labelled data (data_tools.labelled) -> fine-tune every arm (roberta_ds.downstream.probe) -> table + JSON.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from data_tools import labelled
from roberta_ds import cli_args
from roberta_ds.downstream import probe_config
from roberta_ds.training.records import PROBE_COLUMNS, probe_rows
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
    """One block per task: a row per training share and arm, and the gain, over the seeds."""
    b = res["budget"]
    seeds = b["seeds"]
    lines = [f"probe: fine-tuned with transformers.Trainer, {b['max_steps']} steps x batch {b['batch_size']}, lr "
             f"{b['lr']:g}, {b['max_length']} tokens, the same for every arm; seeds {', '.join(map(str, seeds))}"
             + (" (cells: mean ± standard deviation [min, max] over the seeds)" if len(seeds) > 1 else "")]
    for name, task in res["tasks"].items():
        rows = [list(PROBE_COLUMNS), *probe_rows(task)]
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        text = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
        lines += ["", f"{name} task: {task['train_examples']:,} train / {task['test_examples']:,} test examples, "
                      f"{len(task['labels'])} labels ({task['split']})", text[0], "-" * len(text[0]), *text[1:]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = cli_args.parse(ProbeConfig, argv, prog=prog("probe"), description=DESCRIPTION)
        from roberta_ds.downstream import probe  # after parsing: --help answers without importing torch

        # read before loading the model: bad input fails fast
        tasks = []
        for name in cfg.data.task_names():
            if name == "single":
                data = labelled.load(cfg.data, seed=cfg.budget.seed)
                tasks.append(probe.Task("single", data.train, data.test, split=data.split, input=data.input_counts()))
            else:
                train, test, how = labelled.load_pairs(cfg.data, seed=cfg.budget.seed)
                tasks.append(probe.Task("pair", train, test, split=how))
        res = {**probe.run(cfg.encoder, cfg.budget, tasks, progress=lambda line: print(line, flush=True)),
               "settings": cfg.settings()}
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
