"""The step guard: after each optimizer step, may training go on? It owns the safety stops (a loss that is not
finite on some rank; fp16 loss scaling that skips every update), the skipped-step counters, and the messages that
say what happened and what to do. The loop asks for an outcome and, on a halt, records the step and raises
halt()'s error."""

from __future__ import annotations

import torch

from roberta_ds.training.engine.collective import any_rank
from roberta_ds.training.loop.settings import GuardSettings

APPLIED, SKIPPED, NON_FINITE, OVERFLOWING = "applied", "skipped", "non-finite", "overflowing"
"""A step's outcome: its update applied; skipped by fp16 loss scaling (an overflow; the run goes on); not applied
because its loss is not finite (a halt); skipped once too often (a halt)."""
HALTS = (NON_FINITE, OVERFLOWING)


class SafetyStop(RuntimeError):
    """The run stopped itself because going on would train on garbage or on nothing; the message says what to do."""


class NonFiniteLoss(SafetyStop):
    """A step's loss was NaN or inf: the run stopped before applying that update."""


class OverflowStop(SafetyStop):
    """fp16 loss scaling skipped every update for --max_consecutive_skipped steps."""


class StepGuard:
    def __init__(self, cfg: GuardSettings, engine) -> None:
        self.cfg, self.engine = cfg, engine
        self.skipped_in_a_row = 0
        """fp16 steps whose update the loss scaler skipped, consecutively."""
        self.scale_at_minimum = False
        """DeepSpeed's loss scaler could not lower the scale any further."""

    def update_allowed(self, step_loss: torch.Tensor) -> bool:
        """Whether every rank's loss of this step is finite: one flag all-reduced and read (a host sync per step,
        the price of never applying a NaN update; --no_stop_on_nonfinite skips it)."""
        return not self.cfg.stop_on_nonfinite or not any_rank(~torch.isfinite(step_loss))

    def engine_step(self) -> None:
        """engine.step(), noting DeepSpeed's fp16 loss scaler giving up (a bare Exception at its minimum)."""
        try:
            self.engine.step()
        except Exception as e:
            if "loss scale already at minimum" not in str(e):
                raise
            self.scale_at_minimum = True

    def outcome(self, update_allowed: bool, state) -> str:
        """The finished step's outcome; counts skipped updates in ``state.skipped_steps``."""
        if not update_allowed:
            return NON_FINITE
        if self.scale_at_minimum or not self.engine.was_step_applied():
            state.skipped_steps += 1  # fp16 overflow: DeepSpeed skipped the update and lowered the loss scale
            self.skipped_in_a_row += 1
        else:
            self.skipped_in_a_row = 0
        limit = self.cfg.max_consecutive_skipped
        if self.scale_at_minimum or (limit and self.skipped_in_a_row >= limit):
            return OVERFLOWING
        return SKIPPED if self.skipped_in_a_row else APPLIED

    def halt(self, outcome: str, step: int, loss: float, last_good) -> SafetyStop:
        """The error that stops the run after ``step`` (already recorded), with what to do next."""
        if outcome == NON_FINITE:
            where = (f"the last good checkpoint is {last_good} (resume from it with --resume_from_checkpoint auto "
                     "after the change; it also exports)" if last_good else "no checkpoint was saved before it")
            return NonFiniteLoss(
                f"the loss of step {step} is {loss} (not finite): its update was not applied on any rank and "
                f"training stopped; {where}. Try a lower learning rate (--ds optimizer.params.lr=...), gradient "
                "clipping (\"gradient_clipping\": 1.0 in the DeepSpeed JSON), a longer warmup, or bf16/fp32 instead "
                "of fp16"
            )
        scaler = getattr(self.engine.optimizer, "loss_scaler", None)
        scale = ""
        if scaler is not None and hasattr(scaler, "cur_scale"):
            scale = f" (loss scale now {scaler.cur_scale:g}, minimum {getattr(scaler, 'min_scale', '?')})"
        return OverflowStop(
            f"fp16 gradients overflowed at each of the last {self.skipped_in_a_row} steps, up to step {step}"
            f"{scale}{', with the loss scale at its minimum' if self.scale_at_minimum else ''}: DeepSpeed skipped "
            "every one of those updates, so the run was training on nothing and "
            f"stopped. {'The last checkpoint is ' + str(last_good) if last_good else 'No checkpoint was saved'}. "
            "Use bf16 where the GPU has it (\"bf16\": {\"enabled\": true}), lower the learning rate, or lower "
            "fp16.min_loss_scale; --max_consecutive_skipped 0 turns this stop off"
        )
