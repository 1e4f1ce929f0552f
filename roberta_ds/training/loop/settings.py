"""The loop's settings, each set owned by the part that reads it: when to log, evaluate and save (cadence.py) and
when the step guard stops a run (step_guard.py). Import-light, as model/settings.py is: the command line and
--help are built from them without torch. TrainConfig (training/config.py) is made of them; each checks its own
fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from roberta_ds.cli_args import cli
from roberta_ds.training.loop.schedule import parse_duration


@dataclass(kw_only=True)
class CadenceSettings:
    """When the loop logs, evaluates and saves (loop/cadence.py)."""

    save_steps: int = 5000
    """Checkpoint every N steps (and always at the end)."""
    save_total_limit: int = 3
    """Keep the newest K checkpoints (0 keeps all)."""
    eval_steps: int = 0
    """Held-out evaluation every N steps (and at start and end); 0 disables it."""
    eval_max_sequences: int | None = None
    """Evaluate on the first N validation sequences only (same N across runs keeps numbers comparable)."""
    log_steps: int = 50
    """Log the windowed mean loss every N steps; the window is these N steps."""
    eval_time: str | None = field(default=None, metadata=cli(metavar="DURATION"))
    """Held-out evaluation every this much wall time (e.g. 30m), besides --eval_steps."""

    @property
    def eval_time_s(self) -> float | None:
        return None if self.eval_time is None else parse_duration(self.eval_time)

    def cadence_problems(self) -> list[str]:
        problems = duration_problems(self, "eval_time")
        for name in ("save_steps", "log_steps"):
            if getattr(self, name) < 1:
                problems.append(f"--{name} {getattr(self, name)}: must be >= 1")
        if self.eval_steps < 0:
            problems.append(f"--eval_steps {self.eval_steps}: must be >= 0 (0 disables evaluation)")
        return problems


@dataclass(kw_only=True)
class GuardSettings:
    """When the step guard stops a run (loop/step_guard.py)."""

    stop_on_nonfinite: bool = True
    """Stop the run, before the update is applied, at the first step whose loss is NaN or inf (a 1-value host
    sync per step); with --no_stop_on_nonfinite such steps are only warned about."""
    max_consecutive_skipped: int = 100
    """Stop when fp16 loss scaling skips this many updates in a row (the run would train on nothing); 0: never."""

    def guard_problems(self) -> list[str]:
        if self.max_consecutive_skipped < 0:
            return [f"--max_consecutive_skipped {self.max_consecutive_skipped}: must be >= 0 (0: never stop)"]
        return []


def duration_problems(settings, name: str) -> list[str]:
    """A DURATION flag (12m, 1h30m) that does not parse or is not longer than 0."""
    value = getattr(settings, name)
    if value is None:
        return []
    try:
        return [f"--{name} {value}: must be longer than 0"] if parse_duration(value) <= 0 else []
    except ValueError as e:
        return [f"--{name} {e}"]
