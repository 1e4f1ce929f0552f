"""The training loop over a built run (build.py), read top to bottom: ``train`` resumes, then for each global batch
``_step`` (forward and backward over this rank's micro-batches, one optimizer step), the step guard's outcome
(loop/step_guard.py), what the cadence says is due (loop/cadence.py: log, evaluate, save) and the stop reason.
What the loop produces goes to RUN/metrics.jsonl (observe/records.py defines every field; observe/metrics.py the
window metrics) and to its listeners: the live view (observe/live_view.py) and the monitors (observe/monitor.py).
The loss scaling is explained in docs/architecture.md, step 7.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid

import torch
import torch.distributed as dist

from roberta_ds.training.engine import checkpoint
from roberta_ds.training.observe import metrics, records, sanity
from roberta_ds.training import run_files
from roberta_ds.training.build import PretrainRun
from roberta_ds.training.loop.cadence import Cadence
from roberta_ds.reading.data import model_inputs, to_device
from roberta_ds.training.engine.ds_config import peak_lr
from roberta_ds.training.engine.setup import beta_power_reset
from roberta_ds.training.observe.evaluation import evaluate_engine, evaluate_sources
from roberta_ds.training.observe.live_view import LiveView
from roberta_ds.training.observe.monitor import LiveMetrics
from roberta_ds.training.loop.preemption import StopRequest
from roberta_ds.training.observe.records import Evaluation, MetricsLog, TrainWindow
from roberta_ds.training.observe.summary import RunSummary
from roberta_ds.training.observe.totals import WindowAccumulator
from roberta_ds.training.loop.schedule import RunClock
from roberta_ds.training.observe.state import TrainState
from roberta_ds.training.loop.step_guard import HALTS, NonFiniteLoss, OverflowStop, SafetyStop, StepGuard  # noqa: F401 (re-exported)

DONE, OUT_OF_TIME, STOP_AT_STEP, PREEMPTED = "done", "out of time", "stop_at_step", "preempted"
"""Why the loop stops: the schedule's last step, the time budget spent, --stop_at_step or a preemption signal
(the last two save a checkpoint to resume from)."""


class Trainer:
    def __init__(self, run: PretrainRun) -> None:
        self.run, self.cfg = run, run.cfg.train
        self.state = TrainState()
        self.clock = RunClock(run.budget_s, device=run.device)
        self.cadence = Cadence(self.cfg, self.clock, run.budget_s, run.evaluating, run.total_steps, run.scheduler,
                               run.data_limit)
        self.guard = StepGuard(self.cfg, run.engine)
        self.log = MetricsLog(run.out)
        self.view = LiveView(run, self.cadence)
        self.listeners = [self.view, LiveMetrics(run.engine, run.layout.global_batch)]
        self.stop_request = StopRequest()
        self._beta_power_reset = beta_power_reset(run.engine)  # bitwise resume with DeepSpeed's CPU Adam
        self.stopped: str | None = None
        """Why train() returned (one of DONE, OUT_OF_TIME, STOP_AT_STEP, PREEMPTED)."""

    # ----------------------------------------------------------------- the loop
    def train(self) -> RunSummary | None:
        """Train to the end of the schedule (returns the summary), or to --stop_at_step or a preemption signal
        (saves a checkpoint, returns None; ``stopped`` says which)."""
        self.stop_request.install()
        try:
            return self._train()
        finally:
            self.stop_request.uninstall()

    def _train(self) -> RunSummary | None:
        run = self.run
        run.out.mkdir(parents=True, exist_ok=True)
        self._resume()  # may replace the state, the clock and the cadence
        st, cadence = self.state, self.cadence
        if run.is_main:
            (run.out / run_files.EFFECTIVE_CONFIG_NAME).write_text(json.dumps(run.effective_config(), indent=1,
                                                                        ensure_ascii=False, default=str))
        self._emit("header", run.data_warnings + run.coverage_warnings())
        if st.step == 0 and run.evaluating:
            self._evaluate()
        self.clock.start(st.step)

        window = WindowAccumulator(run.device, len(run.sources or []))
        window_t0, paused = time.perf_counter(), 0.0  # paused: evaluation and checkpoint time, not training
        last_saved = st.step if st.step else None
        stop = DONE if st.step >= cadence.total_steps or self.clock.out_of_time else None
        with self.view:
            self.view.start(st.step)
            # One pass of this loop per phase (a mixture or a single run: one pass); the data of a phase ends at the
            # phase's end, or is cut where a time-share run decides that the next phase starts.
            while stop is None:
                if run.mixed:
                    self._emit("phase", run.data.phase_at(st.step), st.step)
                with contextlib.closing(run.data.steps_from(st.step)) as steps:
                    for epoch, micro_batches in steps:
                        self._phase_warmup(st.step)
                        outcome = self.guard.outcome(self._step(micro_batches, window), st)
                        st.step += 1
                        st.sequences_seen += run.layout.global_batch
                        if outcome in HALTS:  # the failed step is on record, then the run stops saying what to do
                            rec = self._close_window(window, time.perf_counter() - window_t0 - paused, epoch)
                            raise self.guard.halt(outcome, st.step, rec.loss, checkpoint.find(run.ckpt_root))
                        out_of_time, timed_eval = cadence.tick(st.step)  # (a time budget re-projects the schedule)
                        switched = run.mixed and run.budget_s is not None and cadence.agreed(st.step) and \
                            run.data.decide(st.step, self.clock.agreed_s, run.budget_s)
                        if switched:
                            cadence.data_limit = run.data.limit()
                        stop = self._stop_reason(out_of_time)
                        save = cadence.save_due(st.step, stop is not None)
                        if cadence.log_due(st.step, self._epoch_end(st.step), save):
                            self._close_window(window, time.perf_counter() - window_t0 - paused, epoch)
                            window_t0, paused = time.perf_counter(), 0.0
                        t_pause = time.perf_counter()
                        if cadence.eval_due(st.step, stop in (DONE, OUT_OF_TIME), timed_eval):
                            self._evaluate()
                        if save:
                            self._save()
                            last_saved = st.step
                        paused += time.perf_counter() - t_pause
                        if stop is not None or switched:
                            break
        if last_saved != st.step:
            self._save()
        self.stopped = stop or DONE
        if stop in (STOP_AT_STEP, PREEMPTED):
            self.view.stopped(st.step, "--stop_at_step" if stop == STOP_AT_STEP else
                              self.stop_request.signal_name or "a signal on another rank")
            return None
        return self._finish()

    def _epoch_end(self, step: int) -> bool:
        """The step ends an epoch or a phase: its logging window closes (a window never spans either)."""
        data = self.run.data
        if self.run.mixed:
            return data.boundary(step) or data.epoch_at(step) != data.epoch_at(step - 1)
        return step % data.steps_per_epoch == 0

    def _phase_warmup(self, step: int) -> None:
        """--phase_warmup_steps: the lr of the step about to run, ramped up again after a phase start. The
        DeepSpeed scheduler set its own value for this step into the optimizer's groups; scale it. (The next
        scheduler step overwrites it again, so resume and the schedule itself are untouched.)"""
        n = self.cfg.phase_warmup_steps
        if not n or self.run.scheduler is None:
            return
        factor = self.warmup_factor(step)
        if factor < 1.0:  # get_lr(), not get_last_lr(): a resumed scheduler's last lr is its constructor's, stale
            for group, lr in zip(self.run.scheduler.optimizer.param_groups, self.run.scheduler.get_lr()):
                group["lr"] = lr * factor

    def warmup_factor(self, step: int) -> float:
        """The re-warmup's factor on the lr of (0-based) step ``step``: linear from 1/N at a phase start to 1."""
        n = self.cfg.phase_warmup_steps
        if not n or not self.run.mixed:
            return 1.0
        start = self.run.data.starts[self.run.data.phase_at(step)]
        return min(1.0, (step - start + 1) / n) if start else 1.0

    def _stop_reason(self, out_of_time: bool) -> str | None:
        step = self.state.step
        if out_of_time:
            self.cadence.set_total(step)
            return OUT_OF_TIME
        if step >= self.cadence.total_steps:
            return DONE
        if self.cadence.data_limit is not None and step >= self.cadence.data_limit[0]:
            self.cadence.set_total(step)
            return DONE
        if step == self.cfg.stop_at_step:
            return STOP_AT_STEP
        if self.stop_request.agreed(step, self.run.world):
            return PREEMPTED
        return None

    def _step(self, micro_batches: list[dict], window: WindowAccumulator) -> bool:
        """One optimizer step over this rank's micro-batches (DeepSpeed accumulates and steps at the boundary).
        Each micro-batch's loss sum is scaled by world size / the global batch's masked tokens (DeepSpeed averages
        gradients over ranks; scale_wrt_gas=False: no second division by the accumulation steps), so the gradient
        is the mean over the global batch's masked tokens, however it is split. Returns False, without applying
        the update on any rank, when the step's loss is NaN or inf on any rank."""
        run = self.run
        on_device = [to_device(mb, run.device) for mb in micro_batches]
        n_global = torch.stack([b["n_masked_tensor"] for b in on_device]).sum()
        if run.world > 1:
            dist.all_reduce(n_global)
        scale = run.world / n_global.clamp(min=1.0)
        last = len(micro_batches) - 1
        step_loss = torch.zeros((), dtype=torch.float64, device=run.device)
        for i, (mb, inputs) in enumerate(zip(micro_batches, on_device)):
            loss_sum, correct = run.engine(**model_inputs(inputs))
            run.engine.backward(loss_sum * scale, scale_wrt_gas=False)
            window.add(loss_sum, correct, mb["n_masked"], mb["n_tokens"], mb.get("source_counts"))
            step_loss += loss_sum.detach().double()
            if i == last:  # DeepSpeed applies the update in this engine.step()
                if not self.guard.update_allowed(step_loss):
                    window.steps += 1
                    return False
                if self._beta_power_reset is not None:
                    self._beta_power_reset()
            self.guard.engine_step()
        window.steps += 1
        return True

    # ----------------------------------------------------------------- records and their listeners
    def _emit(self, event: str, *args) -> None:
        for listener in self.listeners:
            getattr(listener, event)(*args)

    def _append(self, record: records.Record) -> None:
        if self.run.is_main:
            self.log.append(record)
            self.view.warn(sanity.check_records(self.log.records))

    def _close_window(self, window: WindowAccumulator, elapsed: float, epoch: int) -> TrainWindow:
        run, st = self.run, self.state
        st.train_time_s += elapsed
        w = window.close()  # the loop's one host sync: the window's sums over all ranks
        phase = run.data.phase_at(st.step - 1) if run.mixed else None
        st.add_window(w, epoch, phase)
        seq_len = run.data.specs[phase].seq_len if phase is not None else run.seq_len
        lr = float(run.scheduler.get_last_lr()[0]) if run.scheduler else float(peak_lr(run.ds_cfg))
        mix = None
        if run.sources and run.cfg.train.mixture:
            mix = {s.name: {"sequences": int(round(n)), "tokens": int(round(k)), "share": k / max(w.tokens, 1.0)}
                   for s, n, k in zip(run.sources, w.source_sequences, w.source_tokens)}
        rec = TrainWindow(
            step=st.step, epoch=epoch, loss=w.loss, loss_definition=records.window_definition(w.steps),
            window_steps=w.steps, window_masked_tokens=int(w.masked), accuracy=w.accuracy,
            lr=lr * self.warmup_factor(st.step), tokens_seen=st.tokens_seen, sequences_seen=st.sequences_seen,
            tokens_per_s=w.tokens / max(elapsed, 1e-9),
            samples_per_s=w.steps * run.layout.global_batch / max(elapsed, 1e-9), skipped_steps=st.skipped_steps,
            metrics=metrics.compute_all(metrics.Window(run, w, seq_len, elapsed)),
            seq_len=seq_len if phase is not None else None, phase=phase, sources=mix,
        )
        self._append(rec)
        self._emit("window", rec)
        return rec

    def _evaluate(self) -> Evaluation:
        run, st = self.run, self.state
        t0 = time.perf_counter()
        if run.eval_streams:
            res = evaluate_sources(run.engine, run.eval_streams, run.layout, self.cfg.eval_max_sequences, run.device)
        else:
            res = evaluate_engine(run.engine, run.eval_stream, run.layout, self.cfg.eval_max_sequences, run.device)
            unigram = run.manifest.unigram_nats
            res.update(unigram_nats=unigram, below_unigram=None if unigram is None else unigram - res["loss"])
        ev = Evaluation(**res, step=st.step, tokens_seen=st.tokens_seen, eval_time_s=time.perf_counter() - t0,
                        elapsed_s=self.clock.local_elapsed())
        st.evals.append(ev)
        self._append(ev)
        self._emit("evaluation", ev)
        return ev

    # ----------------------------------------------------------------- checkpoints
    def _save(self) -> None:
        run = self.run
        self.clock.sync(self.state.step)  # the checkpoint records the elapsed time (a time budget's resume needs it)
        self.state.clock = self.clock.state
        if run.mixed:
            self.state.phase_starts = list(run.data.starts)
        record = {**self.state.to_dict(run.data.steps_per_epoch, run.layout.global_batch, run.seq_len),
                  "config": run.effective_config()}
        checkpoint.save(run.engine, run.ckpt_root, self.state.step, record, run.hf_config, run.tokenizer, run.rank,
                        self.cfg.save_total_limit)

    def _resume(self) -> None:
        run = self.run
        tag_dir = checkpoint.resolve_resume(self.cfg.resume_from_checkpoint, run.ckpt_root)
        if tag_dir is None:
            self.state.run_id = uuid.uuid4().hex[:12]  # a new run: its checkpoints carry this id (rotation)
            if run.is_main and self.cfg.resume_from_checkpoint == "auto":
                run.console.print(f"no checkpoint under {run.ckpt_root}: starting from scratch")
                self.log.truncate_after(-1)  # records of an attempt killed before its first checkpoint
            if self.cfg.continue_from:
                self._continue(self.cfg.continue_from)
            return
        saved = checkpoint.read_state(tag_dir)
        problems = checkpoint.resume_conflicts(saved["config"], run.effective_config())
        if problems:
            raise ValueError("cannot resume: the checkpoint differs from this run:\n  " + "\n  ".join(problems))
        saved_world = saved["config"]["world_size"]
        self.view.resuming(tag_dir, saved_world)
        checkpoint.load(run.engine, tag_dir, run.rank, saved_world=saved_world, world=run.world, seed=self.cfg.seed)
        self.state = TrainState.from_dict(saved)
        if run.mixed and self.state.phase_starts:  # a time-share run's decided phase starts
            run.data.set_starts(self.state.phase_starts)
        self.clock = RunClock(run.budget_s, self.state.clock, device=run.device)
        self.cadence = Cadence(self.cfg, self.clock, run.budget_s, run.evaluating, self.cadence.total_steps,
                               run.scheduler, run.data.limit() if run.mixed else None)
        self.view.cadence = self.cadence
        if run.budget_s is not None and self.clock.state.projected_total_steps:
            self.cadence.set_total(self.clock.state.projected_total_steps)
        self._emit("resumed", tag_dir, self.state)
        if run.is_main:
            self.log.truncate_after(self.state.step)

    def _continue(self, path: str) -> None:
        """--continue_from: this new run starts from another run's checkpoint, weights and optimizer state (Adam's
        moments and step count) carried; its own schedule, data and step count start afresh."""
        run = self.run
        tag_dir = checkpoint.find_in_run(path)
        if tag_dir is None:
            raise ValueError(f"--continue_from {path}: no roberta-ds checkpoint there (a run directory, its "
                             "checkpoints/ or a global_stepN directory)")
        saved = checkpoint.read_state(tag_dir)
        problems = checkpoint.continue_conflicts(saved["config"], run.effective_config())
        if problems:
            raise ValueError(f"cannot continue from {tag_dir}: the model or tokenizer differs from this run's:\n  "
                             + "\n  ".join(problems))
        checkpoint.load(run.engine, tag_dir, run.rank, saved_world=saved["config"]["world_size"], world=run.world,
                        seed=self.cfg.seed, schedule=False)
        self.state.continued_from = {"checkpoint": str(tag_dir.resolve()), "step": saved["step"],
                                     "tokens_seen": saved["tokens_seen"], "run_id": saved.get("run_id", ""),
                                     "data": saved["config"]["data"].get("mixture") or saved["config"]["data"]["data_dir"]}
        if run.is_main:
            run.console.print(f"continuing from {tag_dir} (step {saved['step']}, {saved['tokens_seen']:,} tokens): "
                              "weights and optimizer state carried; new data, new schedule from step 0")

    # ----------------------------------------------------------------- the end
    def _finish(self) -> RunSummary:
        run = self.run
        peak = (torch.cuda.max_memory_allocated(run.device) / 2**30 if run.device.type == "cuda" else None)
        summary = RunSummary.from_state(self.state, run.effective_config(), elapsed_s=self.clock.state.elapsed_s,
                                        warm_start=run.warm_start_report, data=run.data_summary(),
                                        continued_from=self.state.continued_from, peak_device_memory_gib=peak,
                                        **self._mixture_summary())
        if run.is_main:
            summary.warnings = sanity.check_run(self.log.records, summary, str(run.data_dir))
            self.view.warn(summary.warnings)
            summary.write(run.out)
        if dist.is_initialized():
            dist.barrier()
        return summary

    def _mixture_summary(self) -> dict:
        """summary.json's "sources" (mixtures) and "phases" (phases), from the state's per-phase totals."""
        run, totals = self.run, self.state.phase_totals
        if not run.mixed:
            return {}
        out: dict = {"epochs_completed": run.data.epochs_done(self.state.step),
                     "phases": [{"max_seq_length": run.data.specs[k].seq_len, "steps": t["steps"],
                                 "sequences": t["sequences"], "tokens": t["tokens"]} for k, t in enumerate(totals)]}
        if run.cfg.train.mixture:
            epochs = run.data.source_epochs([t["source_sequences"] for t in totals])
            out["sources"] = {s.name: {"sequences": sum(t["source_sequences"][i] for t in totals),
                                       "tokens": sum(t["source_tokens"][i] for t in totals), "epochs": epochs[i]}
                              for i, s in enumerate(run.sources)}
        limit = self.cadence.data_limit
        if limit is not None and self.state.step >= limit[0]:
            out["stopped_by"] = f"source {limit[1]!r} ran out (on_exhausted: stop) after step {limit[0]}"
        return out
