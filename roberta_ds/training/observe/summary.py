"""RUN/summary.json: the finished run's headline numbers (RunSummary), each defined in SUMMARY_DEFINITIONS, and
what a checkpoint had done when it saved (RunSummary.from_state). Versioned with the records (records.VERSION)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from roberta_ds.training.observe.records import EVAL_DEFINITIONS, LOSS, VERSION, Evaluation
from roberta_ds.training.run_files import SUMMARY_NAME

SUMMARY_DEFINITIONS = {
    "loss": LOSS,
    "initial_loss": "loss of the first optimizer step",
    "final_window_loss": "loss over the last logging window (final_window_steps steps)",
    "epoch_mean_loss": "loss over all steps of each epoch (partial for an unfinished epoch)",
    "eval": f"held-out loss/perplexity/accuracy on the validation split, masking {EVAL_DEFINITIONS['masking']}",
    "tokens": "non-padding tokens processed in training, all ranks",
    "tokens_per_s": "tokens / training wall time (excluding evaluation, checkpointing and start-up)",
    "sources": "per mixture source: training sequences and non-padding tokens read from it, all ranks, and epochs = "
               "sequences / the source's training sequences at each phase's length, summed over phases",
    "phases": "per phase: its length, optimizer steps, sequences and non-padding tokens, all ranks",
}



@dataclass
class RunSummary:
    """RUN/summary.json: the finished run's headline numbers, each defined in ``definitions``."""

    steps: int | None = None
    epochs_completed: float | None = None
    sequences: int | None = None
    tokens: int | None = None
    global_batch: int | None = None
    seq_len: int | None = None
    world_size: int | None = None
    precision: str | None = None
    zero_stage: int | None = None
    lr: float | None = None
    initial_loss: float | None = None
    final_window_loss: float | None = None
    final_window_steps: int | None = None
    epoch_mean_loss: dict[str, float] | None = None
    skipped_steps: int | None = None
    dropped_sequences_per_epoch: int | None = None
    eval: dict | None = None
    eval_initial: dict | None = None
    train_time_s: float | None = None
    elapsed_s: float | None = None
    time_budget_s: float | None = None
    tokens_per_s: float | None = None
    warm_start: Any = None
    data: dict | None = None
    definitions: dict = field(default_factory=lambda: SUMMARY_DEFINITIONS)
    warnings: list[str] | None = None
    sources: dict | None = None
    """Mixtures: per source name, what the run trained on: {"sequences", "tokens", "epochs"} (passes over it)."""
    phases: list | None = None
    """Phases: one {"max_seq_length", "steps", "sequences", "tokens"} per phase, in order."""
    continued_from: dict | None = None
    """--continue_from: the checkpoint whose weights and optimizer state this run started from."""
    stopped_by: str | None = None
    """Why a run ended before its planned steps when data ran out ('stop' sources)."""
    peak_device_memory_gib: float | None = None
    """On a GPU: this rank's peak allocated memory over the run (torch.cuda.max_memory_allocated), GiB; None on a CPU."""

    def to_dict(self) -> dict:
        return {"version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> RunSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def last_eval(self) -> Evaluation | None:
        return None if self.eval is None else Evaluation.from_dict(self.eval)

    @classmethod
    def from_state(cls, state, config: dict, **more) -> RunSummary:
        """The numbers of a run at a point (state.TrainState) under its effective config (effective_config.json,
        also in each checkpoint): the finished run's summary, or what a checkpoint had done when it saved.
        ``more`` adds what only the end of a run knows (elapsed time, data counts, warm start)."""
        from roberta_ds.training.engine.ds_config import peak_lr, zero_stage

        ds, data = config.get("deepspeed", {}), config.get("data", {})
        per_epoch = data.get("steps_per_epoch")
        return cls(**{**dict(
            steps=state.step, epochs_completed=state.step / per_epoch if per_epoch else None,
            sequences=state.sequences_seen, tokens=state.tokens_seen, global_batch=config.get("global_batch"),
            seq_len=data.get("seq_len"), world_size=config.get("world_size"), precision=config.get("precision"),
            zero_stage=zero_stage(ds), lr=peak_lr(ds), initial_loss=state.initial_loss,
            final_window_loss=state.last_window_loss, final_window_steps=state.last_window_steps,
            epoch_mean_loss=state.epoch_mean_loss(), skipped_steps=state.skipped_steps,
            dropped_sequences_per_epoch=data.get("dropped_sequences_per_epoch"),
            eval=state.last_eval.to_dict() if state.last_eval else None,
            eval_initial=state.evals[0].to_dict() if state.evals else None,
            train_time_s=state.train_time_s, elapsed_s=state.clock.elapsed_s,
            time_budget_s=config.get("time_budget_s"),
            tokens_per_s=state.tokens_seen / max(state.train_time_s, 1e-9)), **more})

    def write(self, run_dir: Path) -> None:
        (Path(run_dir) / SUMMARY_NAME).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False, default=str),
                                                  encoding="utf-8")


def read_summary(run_dir: str | Path) -> RunSummary | None:
    """The run's summary, or None while the run is unfinished."""
    path = Path(run_dir) / SUMMARY_NAME
    return RunSummary.from_dict(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else None
