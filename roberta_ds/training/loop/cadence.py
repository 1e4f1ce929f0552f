"""When the training loop acts. One object answers "due now?" and "next at?" for logging, held-out evaluation
(every N steps, or every T seconds of the run's clock), checkpoints and the ranks' agreement on the clock, so the
loop and the live view never compute a schedule twice.

The clock is agreed (schedule.RunClock.sync: rank 0's reading, broadcast) every collective.AGREE_STEPS steps, and
only when a time budget or timed evaluations need it: every rank then evaluates, re-projects the schedule and
stops after the same step.
"""

from __future__ import annotations

from roberta_ds.training.engine.collective import AGREE_STEPS
from roberta_ds.training.loop.schedule import RunClock
from roberta_ds.training.loop.settings import CadenceSettings

PROJECTION_PLACEHOLDER = 10**9
"""total_num_steps of a time-budgeted schedule before the first projection (the run is still in warmup)."""


class Cadence:
    def __init__(self, cfg: CadenceSettings, clock: RunClock, budget_s: float | None, evaluating: bool,
                 total_steps: int, scheduler=None, data_limit: tuple[int, str] | None = None) -> None:
        self.cfg, self.clock, self.budget_s, self.evaluating = cfg, clock, budget_s, evaluating
        self.scheduler = scheduler
        self.data_limit = data_limit
        """(step, source): a mixture's 'stop' source runs out after this step; the run ends there."""
        self.total_steps = total_steps
        """The schedule's last step (a time budget re-projects it at agreement points)."""
        self.next_eval_s: float | None = None
        if cfg.eval_time_s is not None:  # the first timed evaluation after the clock's (resumed) reading
            self.next_eval_s = (clock.state.elapsed_s // cfg.eval_time_s + 1) * cfg.eval_time_s

    def set_total(self, total: int) -> None:
        """A time budget's projection (or its end): the lr schedule decays to zero at ``total`` (schedule.py), or
        where a 'stop' source runs out, if that comes first."""
        if self.data_limit is not None:
            total = min(total, self.data_limit[0])
        self.total_steps = total
        if self.scheduler is not None and hasattr(self.scheduler, "total_num_steps"):
            self.scheduler.total_num_steps = total

    def tick(self, step: int) -> tuple[bool, bool]:
        """After ``step``, at agreement points: (the budget is spent, a timed evaluation is due). A time budget's
        schedule is re-projected here (set_total)."""
        t = self.cfg
        if (self.budget_s is None and t.eval_time_s is None) or step % AGREE_STEPS:
            return False, False
        elapsed = self.clock.sync(step)
        eval_due = False
        if t.eval_time_s is not None and elapsed >= self.next_eval_s:
            eval_due = True
            self.next_eval_s = (elapsed // t.eval_time_s + 1) * t.eval_time_s
        if self.budget_s is None:
            return False, eval_due
        if self.clock.out_of_time:
            return True, eval_due
        self.set_total(max(self.clock.state.projected_total_steps, step + 1))
        return False, eval_due

    def agreed(self, step: int) -> bool:
        """The ranks agreed on the clock after ``step`` (tick synced it)."""
        return (self.budget_s is not None or self.cfg.eval_time_s is not None) and step % AGREE_STEPS == 0

    def log_due(self, step: int, epoch_end: bool, saving: bool) -> bool:
        # A checkpoint always closes a logging window: the window's sums live only in memory, and a resumed run
        # must not lose the steps between the last log and the save.
        return step == 1 or step % self.cfg.log_steps == 0 or epoch_end or saving

    def save_due(self, step: int, stopping: bool) -> bool:
        return step % self.cfg.save_steps == 0 or stopping

    def eval_due(self, step: int, final: bool, timed: bool) -> bool:
        """After ``step``: the final evaluation, a timed one, or every --eval_steps."""
        return self.evaluating and (final or timed or bool(self.cfg.eval_steps and step % self.cfg.eval_steps == 0))

    def steps_to_save(self, step: int) -> int | None:
        """Steps from ``step`` to the next checkpoint (the last step saves too); None after the last."""
        if step >= self.total_steps:
            return None
        return min((step // self.cfg.save_steps + 1) * self.cfg.save_steps, self.total_steps) - step

    def steps_to_eval(self, step: int) -> int | None:
        """Steps to the next --eval_steps evaluation; None when evaluations follow the clock or do not run."""
        if not self.evaluating or step >= self.total_steps or self.cfg.eval_time_s is not None or not self.cfg.eval_steps:
            return None
        return min((step // self.cfg.eval_steps + 1) * self.cfg.eval_steps, self.total_steps) - step

    def seconds_to_eval(self, step: int) -> float | None:
        """Seconds of the run's clock to the next timed evaluation; None unless --eval_time."""
        if not self.evaluating or step >= self.total_steps or self.next_eval_s is None:
            return None
        return max(0.0, self.next_eval_s - self.clock.local_elapsed())
