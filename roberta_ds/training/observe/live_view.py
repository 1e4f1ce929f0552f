"""What a user watching a run sees (rank 0): the header, a line per logging window and per evaluation, warnings
once each, and on a terminal a live view (progress, the last window, the last held-out result, when the next
checkpoint and evaluation come). Not on a terminal (a cluster log file), only the plain lines.

A listener of the trainer's events (header, window, evaluation, resumed), as the monitors are
(monitor.LiveMetrics). A window metric (metrics.py) shows itself on the window's line: nothing here names one.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from roberta_ds.training.engine import setup as engine
from roberta_ds.training.loop.cadence import PROJECTION_PLACEHOLDER, Cadence
from roberta_ds.training.engine.checkpoint import UNIVERSAL_DIRNAME
from roberta_ds.training.engine.ds_config import zero_stage
from roberta_ds.training.observe import metrics
from roberta_ds.training.observe.records import Evaluation, TrainWindow
from roberta_ds.training.run_files import EFFECTIVE_CONFIG_NAME
from roberta_ds.training.loop.schedule import format_duration

if TYPE_CHECKING:  # the built run is the assembly's (training/build.py); the view only reads it
    from roberta_ds.training.build import PretrainRun


class LiveView:
    def __init__(self, run: PretrainRun, cadence: Cadence) -> None:
        self.run, self.cadence = run, cadence
        self.console = run.console
        self.shown = run.is_main
        self._warned: set[str] = set()
        self._last_eval = "no held-out result yet"
        self._progress = Progress(
            TextColumn("[bold]step {task.completed}/{task.total}"), BarColumn(),
            TextColumn("loss {task.fields[loss]} (last window)"), TextColumn("lr {task.fields[lr]:.2e}"),
            TextColumn("{task.fields[tps]:,.0f} tok/s"), TextColumn("{task.fields[sps]:,.1f} samples/s"),
            TextColumn("{task.fields[shares]}"),
            TimeRemainingColumn(), TextColumn("| {task.fields[last_eval]} |"), TextColumn("{task.fields[upcoming]}"),
            console=run.console, disable=not run.is_main or not run.console.is_terminal, transient=True,
        )
        self._task = None

    # ------------------------------------------------------------------ the loop's span
    def __enter__(self) -> LiveView:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def start(self, step: int) -> None:
        self._task = self._progress.add_task("pretrain", total=self.cadence.total_steps, completed=step, loss="-",
                                             lr=0.0, tps=0.0, sps=0.0, last_eval=self._last_eval, upcoming="",
                                             shares="")

    # ------------------------------------------------------------------ events
    def header(self, warnings: list[str]) -> None:
        run, t, d = self.run, self.run.cfg.train, self.run.data
        if not self.shown:
            return
        lines = [f"roberta-ds: {run.cfg.model.model_size} ({run.cfg.model.architecture()}), {run.world} rank(s), "
                 f"precision {run.precision}, ZeRO stage {zero_stage(run.ds_cfg)}, optimizer "
                 f"{engine.optimizer_implementation(run.engine)}"]
        if engine.LAUNCH is not None:
            lines.append(engine.LAUNCH.describe())
        batch = (f"global batch {run.layout.global_batch} = micro {run.layout.micro_batch} x accumulation "
                 f"{run.layout.grad_accum} x {run.world} rank(s)")
        steps = (f"{self.cadence.total_steps} steps in all" if run.budget_s is None else
                 f"time budget {t.time_budget} (the step count follows the clock)")
        if run.mixed:
            lines += self._mixture_lines() + [f"{batch}; {steps}"]
        else:
            lines.append(f"data: {len(run.train_stream):,} training sequences of {run.seq_len} tokens, {batch}; "
                         f"{d.steps_per_epoch} steps/epoch ({d.dropped_per_epoch} sequences per epoch left over and "
                         f"skipped); {steps}")
        lines.append(f"effective configs (all of them): {run.out / EFFECTIVE_CONFIG_NAME}")
        self.console.print("\n".join(lines))
        self.console.print("effective DeepSpeed config: " + json.dumps(run.ds_cfg, sort_keys=True))
        self.warn(warnings)
        if run.warm_start_report:
            self.console.print(f"warm start from {t.init_from}: {run.warm_start_report}")

    def _mixture_lines(self) -> list[str]:
        """Mixtures and phases: a line per source (weight, sequences, what happens when it runs out) and per phase."""
        run, d = self.run, self.run.data
        lines, weights = [], sum(s.weight for s in run.sources)
        for s, n in zip(run.sources, d.lengths[0]):
            lines.append(f"source {s.name}: {s.dir}, weight {s.weight:g} ({s.weight / weights:.1%} of each batch's "
                         f"sequences), {n:,} training sequences of {d.specs[0].seq_len} tokens, "
                         + ("repeats when it runs out" if s.epoch_limit is None else
                            f"the run stops after {s.epoch_limit:g} pass(es)"))
        for k, p in enumerate(d.phases):
            when = (f"from step {p.start}" if p.start is not None else
                    f"from {sum(x.share for x in d.specs[:k]):.0%} of the time budget")
            lines.append(f"phase {k + 1}: {p.seq_len} tokens, {p.share:.0%} of the run, {when}")
        return lines

    def phase(self, k: int, step: int) -> None:
        if self.shown and len(self.run.data.specs) > 1:
            p = self.run.data.specs[k]
            self.console.print(f"phase {k + 1} of {len(self.run.data.specs)} from step {step}: {p.seq_len} tokens")

    def resuming(self, tag_dir, saved_world: int) -> None:
        if self.shown and saved_world != self.run.world:
            from roberta_ds.training.engine.checkpoint import unpartitioned

            how = ("its module through DeepSpeed and Adam's state into this run's ZeRO partitions (a stage-0 "
                   "checkpoint)" if unpartitioned(tag_dir) else
                   f"it through DeepSpeed's universal checkpoint ({tag_dir / UNIVERSAL_DIRNAME}, converted once)")
            self.console.print(f"{tag_dir} was saved by {saved_world} rank(s), this run has {self.run.world}: loading "
                               f"{how}; the data continues at the same global position")

    def resumed(self, tag_dir, state) -> None:
        if state.last_eval is not None:
            self._last_eval = f"held-out {state.last_eval.loss:.4f} at step {state.last_eval.step}"
        if self.shown:
            self.console.print(f"resumed from {tag_dir} at step {state.step}")

    def window(self, rec: TrainWindow) -> None:
        if self.shown:
            self.console.print(
                f"step {rec.step}{self._of_total()} epoch {rec.epoch}: loss {rec.loss:.4f} (mean over last "
                f"{rec.window_steps} step(s), {rec.window_masked_tokens:,} masked tokens) acc {rec.accuracy:.3f} "
                f"lr {rec.lr:.2e} {rec.tokens_per_s:,.0f} tokens/s {rec.samples_per_s:.1f} samples/s"
                + metrics.shown(rec.metrics)
                + (f" skipped(overflow) {rec.skipped_steps}" if rec.skipped_steps else "")
                + (f" len {rec.seq_len}" if rec.seq_len is not None and len(self.run.data.specs) > 1 else "")
                + (" shares " + ", ".join(f"{n} {v['share']:.1%}" for n, v in rec.sources.items())
                   + " of the window's tokens" if rec.sources else "")
            )
        if self._task is not None:
            s_per_step = self.run.layout.global_batch / max(rec.samples_per_s, 1e-9)
            self._progress.update(self._task, completed=rec.step, total=self.cadence.total_steps,
                                  loss=f"{rec.loss:.4f}", lr=rec.lr, tps=rec.tokens_per_s, sps=rec.samples_per_s,
                                  upcoming=self._upcoming(rec.step, s_per_step),
                                  shares=" ".join(f"{n} {v['share']:.0%}" for n, v in (rec.sources or {}).items()))
            self._progress.refresh()  # on a terminal: show each window when it closes (a no-op elsewhere)

    def evaluation(self, ev: Evaluation) -> None:
        self._last_eval = f"held-out {ev.loss:.4f} at step {ev.step}"
        if self.shown:
            b = ev.below_unigram
            gap = "" if b is None else f", {abs(b):.3f} nats {'below' if b >= 0 else 'above'} the unigram line"
            col = ev.collapse
            col = "" if col is None else f", token cosine {col['token_cosine']:.3f}" + (" COLLAPSED" if col["collapsed"] else "")
            self.console.print(
                f"eval step {ev.step}: held-out loss {ev.loss:.4f} (mean over {ev.masked_tokens:,} masked "
                f"tokens in {ev.sequences:,} sequences{gap}), perplexity {ev.perplexity:.2f}, "
                f"accuracy {ev.accuracy:.4f}{col}" + (f" at {ev.seq_len} tokens" if ev.seq_len else "")
                + ("; " + ", ".join(f"{n} {r['loss']:.4f}" for n, r in ev.sources.items()) if ev.sources and
                   len(ev.sources) > 1 else "")
                + ("; " + ", ".join(f"at {L}: {r['loss']:.4f}" for L, r in ev.lengths.items()) if ev.lengths else "")
            )
        if self._task is not None:
            self._progress.update(self._task, last_eval=self._last_eval)
            self._progress.refresh()

    def stopped(self, step: int, why: str) -> None:
        if self.shown:
            self.console.print(f"stopped at step {step} of {self.cadence.total_steps} ({why}), checkpoint saved; "
                               "continue with --resume_from_checkpoint auto")

    def warn(self, warnings: list[str]) -> None:
        """Each warning once per run, as it first appears."""
        for w in warnings:
            if w not in self._warned and self.shown:
                self._warned.add(w)
                self.console.print(f"[yellow]warning:[/] {w}")

    # ------------------------------------------------------------------ helpers
    def _of_total(self) -> str:
        run, total = self.run, self.cadence.total_steps
        if run.budget_s is None:
            return f"/{total}"
        if total == PROJECTION_PLACEHOLDER:
            return ""
        return f"/~{total} ({self.cadence.clock.agreed_s / 60:.1f} of {run.budget_s / 60:.1f} min)"

    def _upcoming(self, step: int, s_per_step: float) -> str:
        """When the next checkpoint and evaluation come, in steps and (at the last window's pace) time."""
        c, parts = self.cadence, []
        if (n := c.steps_to_save(step)) is not None:
            parts.append(f"checkpoint in {_steps(n)} (~{format_duration(n * s_per_step)})")
        if (s := c.seconds_to_eval(step)) is not None:
            parts.append(f"eval in ~{format_duration(s)}")
        elif (n := c.steps_to_eval(step)) is not None:
            parts.append(f"eval in {_steps(n)} (~{format_duration(n * s_per_step)})")
        return ", ".join(parts)


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"
