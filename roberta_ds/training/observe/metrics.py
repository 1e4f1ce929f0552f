"""Window metrics: a number per logging window, defined, computed and shown in one class.

A ``WindowMetric`` listed in ``WINDOW_METRICS`` is, with no other change anywhere:

- computed by the trainer when a logging window closes (``compute``, from the window's sums and the built run),
- written to RUN/metrics.jsonl under its ``name`` (a key of the training record, ``TrainWindow.metrics``; a file
  written before the metric existed reads as None),
- shown on the console's line for the window (``show``),
- sent to the enabled monitors (TensorBoard, CSV, W&B) as ``Train/Samples/<name>``,
- defined, in its ``definition``, in the report's glossary.

The core numbers every window has (loss, accuracy, lr, throughput, counts) stay fields of ``TrainWindow``: the
loop's bookkeeping needs them. What a user adds to watch a run (a norm, a ratio, a count) goes here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # the built run is the assembly's (training/build.py); a metric only reads it
    from roberta_ds.training.build import PretrainRun
    from roberta_ds.training.observe.totals import WindowTotals


@dataclass(frozen=True)
class Window:
    """What a metric sees when a window closes: the run, the window's sums over all ranks, its sequence length."""

    run: PretrainRun
    totals: WindowTotals
    seq_len: int
    elapsed_s: float


class WindowMetric:
    name: ClassVar[str]
    """Its key in metrics.jsonl and its monitor series (Train/Samples/<name>)."""
    definition: ClassVar[str]
    """What it measures and over what, as the report's glossary prints it."""

    def compute(self, window: Window) -> float | None:
        """The value for this window; None where it cannot be measured (written as null, not shown)."""
        raise NotImplementedError

    def show(self, value: Any) -> str:
        """Its part of the console's window line."""
        return f"{self.name.replace('_', ' ')} {value:.3g}"


class GradNorm(WindowMetric):
    name = "grad_norm"
    definition = ("2-norm of all gradients at the window's last step, before clipping (DeepSpeed's "
                  "get_global_grad_norm, kept at ZeRO stage 0 in fp32 too)")

    def compute(self, window: Window) -> float | None:
        norm = window.run.engine.get_global_grad_norm()
        return None if norm is None else float(norm)

    def show(self, value: float) -> str:
        return f"grad norm {value:.3g}"


class Fill(WindowMetric):
    name = "fill"
    definition = ("non-padding tokens / token slots (sequences x sequence length) of the window's batches, all "
                  "ranks: how much of each step packing put to use (1.0 = no padding)")

    def compute(self, window: Window) -> float | None:
        slots = window.totals.steps * window.run.layout.global_batch * window.seq_len
        return window.totals.tokens / slots if slots else None

    def show(self, value: float) -> str:
        return f"fill {value:.1%}"


WINDOW_METRICS: tuple[WindowMetric, ...] = (GradNorm(), Fill())
"""Every window metric, in the order the console line shows them."""

DEFINITIONS = {m.name: m.definition for m in WINDOW_METRICS}


def compute_all(window: Window) -> dict[str, float | None]:
    return {m.name: m.compute(window) for m in WINDOW_METRICS}


def shown(values: dict) -> str:
    """The console's part for the metrics of one window: those with a value, each as its metric shows it."""
    return "".join(f" {m.show(values[m.name])}" for m in WINDOW_METRICS if values.get(m.name) is not None)


def series(values: dict) -> list[tuple[str, float]]:
    """The monitor events of one window: (Train/Samples/<name>, value) for those with a value."""
    return [(f"Train/Samples/{m.name}", float(values[m.name])) for m in WINDOW_METRICS
            if values.get(m.name) is not None]
