"""Did pretraining help? Fine-tune a classifier from a pretrained encoder and from scratch, same budget.

    python launcher/probe.py --model RUN/final_model --train headlines.txt --test_fraction 0.2 --out probe.json
    python launcher/probe.py --model none --tokenizer SHARDS/tokenizer --model_size tiny --train T --test S

parse -> read the labelled data (data_tools.labelled) -> fine-tune both arms (roberta_ds.probe) -> table + JSON.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from data_tools import labelled
from roberta_ds import cli_args, probe
from roberta_ds.commands import prog

DESCRIPTION = ("Fine-tune a classifier from a pretrained encoder and from scratch with the same budget; "
               "report accuracy and macro-F1 of both.")


@dataclass
class ProbeConfig:
    """The model to probe, the labelled data and the fine-tuning budget (the same for both arms)."""

    encoder: probe.EncoderConfig
    """The encoder to probe (or none) and its tokenizer."""
    data: labelled.LabelledConfig
    """Where the labelled examples come from and how the test set is made."""
    budget: probe.BudgetConfig
    """Steps, batch, learning rate, length and seed: the same for both arms."""
    out: str | None = None
    """Also write the JSON result here."""

    def settings(self) -> dict:
        """Every setting by its flag's name (the result's "settings")."""
        return {**asdict(self.encoder), **asdict(self.data), **asdict(self.budget), "out": self.out}


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


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = cli_args.parse(ProbeConfig, argv, prog=prog("probe"), description=DESCRIPTION)
        data = labelled.load(cfg.data, seed=cfg.budget.seed)  # before loading the model: bad input fails fast
        examples = probe.Examples(data.train, data.test, split=data.split, input=data.input_counts())
        res = {**probe.run(cfg.encoder, cfg.budget, examples), "settings": cfg.settings()}
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
