"""Run settings outside the DeepSpeed engine; launcher/pretrain.py generates its command line from them
(roberta_ds/cli_args.py: every field is a flag, its docstring the flag's help).

Engine settings (batch, optimizer, scheduler, precision, ZeRO) live only in ds_configs/*.json
and ``--ds`` overrides; sequence length and vocab come from the shard manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from roberta_ds.cli_args import cli
from roberta_ds.reading import SHUFFLE_BUFFER
from roberta_ds.reading.masking import MaskingConfig
from roberta_ds.training.model.settings import ModelConfig
from roberta_ds.training.loop.schedule import parse_duration
from roberta_ds.training.loop.settings import CadenceSettings, GuardSettings, duration_problems


@dataclass
class TrainConfig(GuardSettings, CadenceSettings):
    """What to train on, for how long, and where to write; with the loop's settings (loop/settings.py), which
    their parts own."""

    ds_config: str
    """DeepSpeed JSON (ds_configs/zero2.json ...): every engine setting."""
    output_dir: str
    """Run directory: checkpoints/, metrics.jsonl, summary.json, final_model/."""
    data_dir: str | None = None
    """A directory written by `python -m data_tools pack` (its manifest.json); or --mixture."""
    mixture: str | None = field(default=None, metadata=cli(metavar="FILE.json"))
    """Several shard directories mixed by weight: {"sources": [{"name": "thuc", "dir": "shards/thuc", "weight": 0.3,
    "on_exhausted": "repeat"|"stop"}, ...]} (instead of --data_dir; README "Mixtures and phases")."""
    phases: str | None = field(default=None, metadata=cli(metavar="LEN:SHARE,..."))
    """Sequence-length phases as shares of the run (--max_steps or --time_budget), e.g. 128:0.9,512:0.1: one lr
    schedule across them; shards packed once at the longest length."""
    phase_warmup_steps: int = 0
    """With --phases: ramp the lr linearly back up over this many steps at the start of every phase after the
    first (a re-warmup, as hfl's 512 phase had); 0: the one schedule runs on unchanged."""
    continue_from: str | None = field(default=None, metadata=cli(metavar="CHECKPOINT"))
    """Continue a roberta-ds run on new data (a new --data_dir or --mixture, new --phases) with a new schedule: the
    checkpoint's weights and optimizer state are carried, its step, schedule and data position are not (a
    global_stepN directory, a checkpoints/ directory or a run directory). --init_from takes weights only."""
    ds_overrides: list[str] = field(default_factory=list, metadata=cli(flag="--ds", metavar="KEY.PATH=VALUE"))
    """Override a DeepSpeed JSON key, e.g. --ds train_micro_batch_size_per_gpu=8 (repeatable)."""
    num_train_epochs: float | None = None
    """Passes over the training split (default 1 when --max_steps is not given)."""
    max_steps: int | None = None
    """Optimizer steps; overrides --num_train_epochs."""
    max_seq_length: int | None = None
    """Training length; default the shards' packed length. Shorter splits blocks, never truncates."""
    seed: int = 42
    """Seeds model init, data order, dynamic masks and dropout."""
    num_workers: int = 0
    """Loader worker processes per rank (0: load in the training process)."""
    resume_from_checkpoint: str | None = field(default=None, metadata=cli(metavar="auto|PATH"))
    """'auto' (the run's newest checkpoint, if any) or a checkpoint path."""
    init_from: str | None = None
    """Continue pretraining from a Hugging Face RoBERTa or BERT checkpoint: a directory, or a hub id (ORG/NAME) when
    the hub is reachable."""
    stop_at_step: int | None = None
    """Save and exit after this step without changing the schedule (split a long run into time-boxed jobs)."""
    shuffle_buffer: int = SHUFFLE_BUFFER
    """Sequences shuffled together, as a window of whole samples (indices only: no data held in memory)."""
    time_budget: str | None = field(default=None, metadata=cli(metavar="DURATION"))
    """Train for this much wall time (12m, 20h, 1h30m) instead of --max_steps: the lr schedule (warmup, peak,
    decay) follows the clock and the run ends annealed when the budget is spent; not bitwise reproducible."""
    estimate_memory: str | None = field(default=None, metadata=cli(metavar="GPUSxNODES"))
    """Print the per-GPU memory this run needs under ZeRO-1/2/3 and offload on GPUS per node x NODES (e.g. 8x4),
    from DeepSpeed's estimators, and exit without training."""

    @property
    def time_budget_s(self) -> float | None:
        return None if self.time_budget is None else parse_duration(self.time_budget)

    def __post_init__(self) -> None:
        problems = duration_problems(self, "time_budget") + self.cadence_problems() + self.guard_problems()
        if self.time_budget is not None and (self.max_steps is not None or self.num_train_epochs is not None):
            problems.append(f"--time_budget {self.time_budget} with --max_steps/--num_train_epochs: choose one way to "
                            "end the run (a wall-time budget, or a step count)")
        if self.time_budget is not None and self.stop_at_step is not None:
            problems.append("--stop_at_step splits a step-count schedule into jobs; a --time_budget run stops on its "
                            "own (resume it with --resume_from_checkpoint auto)")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"--max_steps {self.max_steps}: must be >= 1")
        if self.num_train_epochs is not None and self.num_train_epochs <= 0:
            problems.append(f"--num_train_epochs {self.num_train_epochs}: must be > 0")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            problems.append(f"--max_seq_length {self.max_seq_length}: must be >= 8")
        if self.num_workers < 0:
            problems.append(f"--num_workers {self.num_workers}: must be >= 0")
        if self.stop_at_step is not None and self.stop_at_step < 1:
            problems.append(f"--stop_at_step {self.stop_at_step}: must be >= 1")
        if self.shuffle_buffer < 1:
            problems.append(f"--shuffle_buffer {self.shuffle_buffer}: must be >= 1")
        if (self.data_dir is None) == (self.mixture is None):
            problems.append("give the training data as --data_dir SHARDS or as --mixture FILE.json (one of them)")
        elif self.data_dir is not None and not Path(self.data_dir).is_dir():
            problems.append(f"--data_dir {self.data_dir}: no such directory (make one with `python -m data_tools pack`)")
        elif self.mixture is not None and not Path(self.mixture).is_file():
            problems.append(f"--mixture {self.mixture}: no such file (a JSON list of sources: README \"Mixtures and "
                            "phases\")")
        if self.phases is not None:
            from roberta_ds.reading.mixture_config import parse_phases

            try:
                parse_phases(self.phases)
                if self.max_seq_length is not None:
                    problems.append(f"--phases {self.phases} sets the lengths; leave out --max_seq_length")
            except ValueError as e:
                problems.append(str(e))
        if self.phase_warmup_steps < 0:
            problems.append(f"--phase_warmup_steps {self.phase_warmup_steps}: must be >= 0")
        elif self.phase_warmup_steps and self.phases is None:
            problems.append("--phase_warmup_steps re-warms the lr at phase starts: it needs --phases")
        if self.continue_from is not None:
            if self.init_from is not None:
                problems.append("--continue_from (a roberta-ds checkpoint, optimizer included) and --init_from "
                                "(Hugging Face weights only): choose one")
            if not Path(self.continue_from).is_dir():
                problems.append(f"--continue_from {self.continue_from}: no such directory (a roberta-ds run, its "
                                "checkpoints/ or one global_stepN)")
        if self.init_from is not None and not Path(self.init_from).is_dir() and not _looks_like_hub_id(self.init_from):
            problems.append(f"--init_from {self.init_from}: no such directory, and not a hub id (ORG/NAME): give a "
                            "Hugging Face model directory or a hub id such as hfl/chinese-roberta-wwm-ext")
        if problems:
            raise ValueError("invalid settings:\n  " + "\n  ".join(problems))


@dataclass
class RunConfig:
    train: TrainConfig
    model: ModelConfig
    masking: MaskingConfig

    def to_dict(self) -> dict:
        return {"train": asdict(self.train), "model": asdict(self.model), "masking": asdict(self.masking)}


def _looks_like_hub_id(text: str) -> bool:
    """ORG/NAME (one slash, no path-like parts): a Hugging Face hub repository id, downloaded by warm_start."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text
