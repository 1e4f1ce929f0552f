"""The probe's settings (the encoder, the fine-tuning budget), apart from probe.py so that its command line and
--help are built without importing torch and transformers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from roberta_ds.cli_args import cli
from roberta_ds.training.model_config import PRESETS


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
    """The first fine-tuning seed: it seeds the test split (without --test), the pairs, the training subset, the
    initialisation, dropout and the data order; the same for both arms."""
    repeats: int = 1
    """Fine-tune every arm with this many seeds (seed, seed + 1, ...); the table shows mean and spread."""
    train_fractions: tuple[str, ...] = ("1",)
    """Shares of the training examples to fine-tune on, e.g. 0.1,1 (a subset drawn with each seed)."""

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.repeats)]

    @property
    def fractions(self) -> list[float]:
        return [float(f) for f in self.train_fractions]

    def __post_init__(self) -> None:
        problems = []
        if self.repeats < 1:
            problems.append(f"--repeats {self.repeats}: must be >= 1")
        try:
            if not self.train_fractions or not all(0 < f <= 1 for f in self.fractions):
                raise ValueError
        except ValueError:
            problems.append(f"--train_fractions {','.join(self.train_fractions)}: shares in (0, 1], e.g. 0.1,1")
        for name in ("max_length", "max_steps", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"--{name} {getattr(self, name)}: must be >= 1")
        if self.max_length < 4:
            problems.append(f"--max_length {self.max_length}: must be >= 4")
        if not self.lr > 0:
            problems.append(f"--lr {self.lr}: must be > 0")
        if problems:
            raise ValueError("invalid probe budget:\n  " + "\n  ".join(problems))
