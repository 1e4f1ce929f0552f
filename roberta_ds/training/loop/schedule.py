"""Wall-time budgets: a run whose learning-rate schedule and stop point follow the clock, not a step count.

Why: a cluster allocation is measured in hours, not steps. A step-count schedule must guess the
step rate in advance; guess high and the job is killed mid-decay (never annealed), guess low and
the allocation is wasted. Izsak et al. 2021 ("How to Train BERT with an Academic Budget") tie the
warmup/decay schedule to the time budget for exactly this reason.

How: the DeepSpeed JSON keeps the one definition of the schedule (``WarmupDecayLR`` or
``WarmupCosineLR``: peak lr, warmup steps, warmup shape). With ``--time_budget`` its
``total_num_steps: "auto"`` is the *projected* number of steps that fit in the budget, re-estimated
every ``collective.AGREE_STEPS`` steps from the measured step rate, so the decay reaches zero when the time runs
out; the run stops at the first sync point past the budget. Every rank uses rank 0's clock (one
broadcast per sync point), so all ranks change the lr and stop at the same step.

What the clock measures: wall time of the training loop (steps, periodic evaluations and
checkpoints), summed over resumed segments. Start-up, the final evaluation and the export come on
top; the time between a run's last checkpoint and a kill is not counted, because it is redone.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


TIME_SCHEDULERS = ("WarmupDecayLR", "WarmupCosineLR")
"""DeepSpeed schedulers whose decay is defined by total_num_steps, which a time budget projects."""

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """'12m', '20h', '1h30m', '90s', '2.5h' -> seconds; a bare number means minutes."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t) * 60.0
    m = _DURATION.match(t)
    if not t or m is None or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration: write e.g. 12m, 20h, 1h30m or 90s")
    h, mins, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mins * 60 + s


def format_duration(seconds: float | None) -> str:
    """``3725`` -> ``"1h 02m 05s"``, ``65`` -> ``"1m 05s"``; None -> an em dash."""
    if seconds is None:
        return "—"
    h, rem = divmod(int(round(seconds)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s"


@dataclass
class ClockState:
    """The part of the clock a checkpoint keeps."""

    elapsed_s: float = 0.0
    """Wall time of the training loop so far, over all resumed segments."""
    projected_total_steps: int | None = None
    """The schedule's total_num_steps at the last sync point (time budgets only)."""


class RunClock:
    """Rank 0's wall clock, agreed by every rank at sync points; projects the steps a budget allows."""

    def __init__(self, budget_s: float | None, state: ClockState | None = None, device: torch.device | None = None):
        import torch  # here, not at the top: the run's config (and --help) imports parse_duration without torch

        self.budget_s = budget_s
        self.state = state or ClockState()
        self.device = device or torch.device("cpu")
        self._t0 = time.perf_counter()
        self._base = self.state.elapsed_s
        self._start_step: int | None = None
        self.agreed_s = self.state.elapsed_s
        """Elapsed seconds as of the last sync point, identical on every rank."""

    def start(self, step: int) -> None:
        """Call when the loop starts (after resume and the initial evaluation): the step rate is measured from here."""
        self._t0 = time.perf_counter()
        self._base = self.state.elapsed_s
        self._start_step = step

    def local_elapsed(self) -> float:
        return self._base + time.perf_counter() - self._t0

    def sync(self, step: int) -> float:
        """Agree on rank 0's elapsed time (a collective: every rank must call it at the same step)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([self.local_elapsed()], dtype=torch.float64, device=self.device)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.broadcast(t, src=0)
        self.agreed_s = float(t.item())
        self.state.elapsed_s = self.agreed_s
        if self.budget_s is not None:
            self.state.projected_total_steps = self.project(step)
        return self.agreed_s

    def project(self, step: int) -> int:
        """Steps that fit in the budget at the rate measured since ``start`` (at least ``step``)."""
        assert self.budget_s is not None and self._start_step is not None
        done = step - self._start_step
        spent = self.agreed_s - self._base
        if done <= 0 or spent <= 0:
            return max(step, self.state.projected_total_steps or step)
        rate = spent / done  # seconds per step, evaluations and checkpoints so far included
        return step + max(0, int((self.budget_s - self.agreed_s) / rate))

    @property
    def out_of_time(self) -> bool:
        return self.budget_s is not None and self.agreed_s >= self.budget_s
