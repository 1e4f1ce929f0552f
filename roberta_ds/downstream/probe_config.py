"""The probe's settings (the encoder, the fine-tuning budget), apart from probe.py so that its command line and
--help are built without importing torch and transformers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from roberta_ds.cli_args import cli
from roberta_ds.training.model.settings import PRESETS


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
    """Optimizer steps per arm (unless --num_train_epochs is given)."""
    num_train_epochs: float | None = None
    """Passes over the training examples instead of --max_steps (CLUE's protocol counts epochs); 3 with --grid."""
    batch_size: int = 32
    """Examples per step."""
    lr: float = 5e-4
    """AdamW peak learning rate (linear warmup over 10 % of the steps, then linear decay)."""
    grid: bool = False
    """CLUE's protocol: fine-tune every --grid_batch_sizes x --grid_lrs setting (instead of --batch_size and --lr)
    for each seed, keep each seed's best test (dev) accuracy, and report mean ± std over the seeds."""
    grid_batch_sizes: tuple[str, ...] = ("16", "32", "64")
    """The grid's batch sizes."""
    grid_lrs: tuple[str, ...] = ("1e-5", "2e-5", "3e-5", "5e-5")
    """The grid's peak learning rates."""
    arms: tuple[str, ...] = ("pretrained", "scratch")
    """Which arms to fine-tune: pretrained (the model), scratch (the same classifier from random initialisation)."""
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

    @property
    def epochs(self) -> float | None:
        return self.num_train_epochs if self.num_train_epochs is not None else (3.0 if self.grid else None)

    def settings(self) -> list[tuple[int, float]]:
        """(batch size, learning rate) of every fine-tuning setting: the grid's, or --batch_size and --lr."""
        if not self.grid:
            return [(self.batch_size, self.lr)]
        return [(int(b), float(lr)) for b in self.grid_batch_sizes for lr in self.grid_lrs]

    def steps(self, batch_size: int, examples: int) -> int:
        """Optimizer steps for a setting: --num_train_epochs passes over ``examples``, or --max_steps."""
        if self.epochs is None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * examples / batch_size))

    def __post_init__(self) -> None:
        problems = []
        if self.repeats < 1:
            problems.append(f"--repeats {self.repeats}: must be >= 1")
        try:
            if not self.train_fractions or not all(0 < f <= 1 for f in self.fractions):
                raise ValueError
        except ValueError:
            problems.append(f"--train_fractions {','.join(self.train_fractions)}: shares in (0, 1], e.g. 0.1,1")
        try:
            bad_grid = not all(int(b) >= 1 for b in self.grid_batch_sizes) or not all(
                float(lr) > 0 for lr in self.grid_lrs)
        except ValueError:
            bad_grid = True
        if bad_grid:
            problems.append(f"--grid_batch_sizes {','.join(self.grid_batch_sizes)} / --grid_lrs "
                            f"{','.join(self.grid_lrs)}: positive integers / positive numbers, e.g. 16,32 and 2e-5,3e-5")
        if not self.arms or set(self.arms) - {"pretrained", "scratch"}:
            problems.append(f"--arms {','.join(self.arms)}: choose pretrained, scratch or pretrained,scratch")
        if self.num_train_epochs is not None and not self.num_train_epochs > 0:
            problems.append(f"--num_train_epochs {self.num_train_epochs}: must be > 0")
        if self.grid and self.fractions != [1.0]:
            problems.append("--grid with --train_fractions: the grid fine-tunes on all the training examples")
        for name in ("max_length", "max_steps", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"--{name} {getattr(self, name)}: must be >= 1")
        if self.max_length < 4:
            problems.append(f"--max_length {self.max_length}: must be >= 4")
        if not self.lr > 0:
            problems.append(f"--lr {self.lr}: must be > 0")
        if problems:
            raise ValueError("invalid probe budget:\n  " + "\n  ".join(problems))


CLUE_REFERENCE = {"afqmc": 74.60, "tnews": 58.08, "iflytek": 61.23, "cmnli": 81.11, "ocnli": 76.92}
"""Dev accuracy (%) of RoBERTa-wwm-ext (base) on CLUE's classification tasks, the table Chinese users compare with:
PaddleNLP's CLUE benchmark (average 74.11 over the five), under CLUE's protocol: a grid of batch {16, 32, 64} x lr
{1, 2, 3, 5}e-5, 2 to 5 epochs, best dev score."""
CLUE_REFERENCE_MODEL = "RoBERTa-wwm-ext (base, PaddleNLP's CLUE benchmark, dev accuracy, best of the grid)"
