"""What `evaluate` evaluates, on which data: apart from saved_model.py so that its command line and --help are built
without importing torch and transformers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from roberta_ds.shard_format import SPLITS


@dataclass
class EvalConfig:
    """What to evaluate, on which data."""

    model: str
    """RUN/final_model, a checkpoint directory (RUN/checkpoints/global_stepN) or RUN/checkpoints (its newest)."""
    data_dir: str
    """Shards written by `python -m data_tools pack`."""
    split: str = "validation"
    """Manifest split to evaluate on: train or validation."""
    micro_batch: int = 16
    """Sequences per forward per process (does not change the numbers)."""
    max_sequences: int | None = None
    """Only the first N sequences of the split (use the same N for runs you compare)."""
    max_seq_length: int | None = None
    """Evaluation length; default the shards' packed length, capped at the model's positions."""
    out: str | None = None
    """Also write the JSON result to this file."""

    def __post_init__(self) -> None:
        problems = []
        if self.split not in SPLITS:
            problems.append(f"--split {self.split!r}: choose one of {list(SPLITS)}")
        if self.micro_batch < 1:
            problems.append(f"--micro_batch {self.micro_batch}: must be >= 1")
        if self.max_sequences is not None and self.max_sequences < 1:
            problems.append(f"--max_sequences {self.max_sequences}: must be >= 1 (omit it for the whole split)")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            problems.append(f"--max_seq_length {self.max_seq_length}: must be >= 8")
        if not Path(self.data_dir).is_dir():
            problems.append(f"--data_dir {self.data_dir}: no such directory (make one with `python -m data_tools pack`)")
        if not Path(self.model).is_dir():
            problems.append(f"--model {self.model}: no such directory (RUN/final_model or a checkpoint directory)")
        if problems:
            raise ValueError("invalid settings:\n  " + "\n  ".join(problems))
