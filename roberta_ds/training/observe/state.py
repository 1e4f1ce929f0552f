"""The trainer's resumable state: everything besides the DeepSpeed engine that a resumed run needs.

Saved once per checkpoint, as ``roberta_ds_state.json`` next to DeepSpeed's files (checkpoint.py);
the effective configs and a human-readable data cursor are written beside it for the compatibility
check and for people. Older checkpoints (per-epoch sums as positional lists, the window as a pair)
still read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from roberta_ds.training.observe.records import Evaluation
from roberta_ds.training.observe.totals import EpochTotals, WindowTotals
from roberta_ds.training.loop.schedule import ClockState


@dataclass
class TrainState:
    step: int = 0
    """Optimizer steps done (the data position follows from it: epoch, step in epoch)."""
    sequences_seen: int = 0
    tokens_seen: int = 0
    """Non-padding tokens trained on, all ranks."""
    skipped_steps: int = 0
    """Steps whose update DeepSpeed skipped (fp16 overflow)."""
    initial_loss: float | None = None
    """Loss of the first logging window (the first step)."""
    epochs: dict[int, EpochTotals] = field(default_factory=dict)
    train_time_s: float = 0.0
    """Training wall time, excluding evaluation, checkpoints and start-up."""
    last_window_loss: float | None = None
    last_window_steps: int = 0
    evals: list[Evaluation] = field(default_factory=list)
    clock: ClockState = field(default_factory=ClockState)
    run_id: str = ""
    """Names the run across resumes; checkpoint rotation deletes only checkpoints with this id ("" before v0.2)."""
    phase_totals: list[dict] = field(default_factory=list)
    """Mixtures and phases: per phase {"steps", "sequences", "tokens", "source_sequences", "source_tokens"}."""
    phase_starts: list[int | None] = field(default_factory=list)
    """Mixtures and phases: each phase's first step (None: not decided yet; time-share phases)."""
    continued_from: dict | None = None
    """--continue_from: the checkpoint this run's weights and optimizer state came from."""

    def add_window(self, w: WindowTotals, epoch: int, phase: int | None = None) -> None:
        if self.initial_loss is None:
            self.initial_loss = w.loss
        self.tokens_seen += int(w.tokens)
        self.epochs.setdefault(epoch, EpochTotals()).add(w)
        self.last_window_loss, self.last_window_steps = w.loss, w.steps
        if phase is not None:
            n = len(w.source_sequences)
            while len(self.phase_totals) <= phase:
                self.phase_totals.append({"steps": 0, "sequences": 0, "tokens": 0, "source_sequences": [0] * n,
                                          "source_tokens": [0] * n})
            t = self.phase_totals[phase]
            t["steps"] += w.steps
            t["sequences"] += int(round(sum(w.source_sequences)))
            t["tokens"] += int(w.tokens)
            t["source_sequences"] = [a + int(round(b)) for a, b in zip(t["source_sequences"], w.source_sequences)]
            t["source_tokens"] = [a + int(round(b)) for a, b in zip(t["source_tokens"], w.source_tokens)]

    @property
    def last_eval(self) -> Evaluation | None:
        return self.evals[-1] if self.evals else None

    def epoch_mean_loss(self) -> dict[str, float]:
        return {str(e): t.mean_loss for e, t in sorted(self.epochs.items())}

    def to_dict(self, steps_per_epoch: int, global_batch: int, seq_len: int) -> dict:
        epoch, in_epoch = divmod(self.step, steps_per_epoch)
        return {
            "step": self.step,
            "epoch": epoch,
            "data_cursor": {"epoch": epoch, "step_in_epoch": in_epoch, "global_batch": global_batch,
                            "seq_len": seq_len},
            "sequences_seen": self.sequences_seen,
            "tokens_seen": self.tokens_seen,
            "skipped_steps": self.skipped_steps,
            "initial_loss": self.initial_loss,
            "epochs": {str(k): asdict(v) for k, v in self.epochs.items()},
            "train_time_s": self.train_time_s,
            "last_window": {"loss": self.last_window_loss, "steps": self.last_window_steps},
            "evals": [e.to_dict() for e in self.evals],
            "clock": asdict(self.clock),
            "run_id": self.run_id,
            "phase_totals": self.phase_totals,
            "phase_starts": self.phase_starts,
            "continued_from": self.continued_from,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        if "epochs" in d:
            epochs = {int(k): EpochTotals(**v) for k, v in d["epochs"].items()}
        else:  # version 1: [loss_sum, masked, tokens, steps]
            epochs = {int(k): EpochTotals(*v) for k, v in d.get("epoch_sums", {}).items()}
        window = d.get("last_window") or {}
        if isinstance(window, list):  # version 1: [loss, steps]
            window = {"loss": window[0], "steps": window[1]}
        return cls(
            step=d["step"], sequences_seen=d["sequences_seen"], tokens_seen=d["tokens_seen"],
            skipped_steps=d["skipped_steps"], initial_loss=d["initial_loss"], epochs=epochs,
            train_time_s=d["train_time_s"], last_window_loss=window.get("loss"),
            last_window_steps=window.get("steps", 0),
            evals=[Evaluation.from_dict(e) for e in d.get("evals", [])],
            clock=ClockState(**d.get("clock", {})),
            run_id=d.get("run_id", ""),
            phase_totals=d.get("phase_totals", []),
            phase_starts=d.get("phase_starts", []),
            continued_from=d.get("continued_from"),
        )

