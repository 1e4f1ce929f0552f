"""The training loop over a built run (build.py): step, then maybe log, evaluate, save; stop when done.

The loss of a step is d(sum of CE over the global batch's masked tokens) / (global masked-token
count): each rank scales its micro-batch loss by world_size / global_count because DeepSpeed
averages gradients over ranks, and we pass scale_wrt_gas=False so DeepSpeed does not divide again
by the accumulation steps. The result does not depend on how the global batch is split over ranks
and micro-steps. What is logged is defined in records.py.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from pathlib import Path

import torch
import torch.distributed as dist
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from roberta_ds import checkpoint, engine, records, sanity
from roberta_ds.build import PROJECTION_PLACEHOLDER, PretrainRun
from roberta_ds.collective import any_rank
from roberta_ds.data import model_inputs, to_device
from roberta_ds.engine import beta_power_reset, optimizer_implementation
from roberta_ds.evaluation import evaluate_engine
from roberta_ds.monitor import LiveMetrics
from roberta_ds.preemption import StopRequest
from roberta_ds.records import Evaluation, MetricsLog, RunSummary, TrainWindow, WindowAccumulator
from roberta_ds.schedule import SYNC_STEPS, RunClock, format_duration
from roberta_ds.state import TrainState
from roberta_ds.tokenizer import TokenizerInfo

DONE, OUT_OF_TIME, STOP_AT_STEP, PREEMPTED = "done", "out of time", "stop_at_step", "preempted"
"""Why the loop stops: the schedule's last step, the time budget spent, --stop_at_step or a preemption signal
(the last two save a checkpoint to resume from)."""


class SafetyStop(RuntimeError):
    """The run stopped itself because going on would train on garbage or on nothing; the message says what to do."""


class NonFiniteLoss(SafetyStop):
    """A step's loss was NaN or inf: the run stopped before applying that update."""


class OverflowStop(SafetyStop):
    """fp16 loss scaling skipped every update for --max_consecutive_skipped steps."""


class Trainer:
    def __init__(self, run: PretrainRun) -> None:
        self.run = run
        self.cfg = run.cfg.train
        self.state = TrainState()
        self.clock = RunClock(run.budget_s, device=run.device)
        self.total_steps = run.total_steps
        self.log = MetricsLog(run.out)
        self.live = LiveMetrics(run.engine, run.layout.global_batch)  # TensorBoard / CSV / W&B, when enabled
        self._warned: set[str] = set()
        self._next_eval_s: float | None = None
        self.stop_request = StopRequest()
        self._beta_power_reset = beta_power_reset(run.engine)  # bitwise resume with DeepSpeed's CPU Adam
        self._skipped_in_a_row = 0  # fp16 steps whose update the loss scaler skipped, consecutively
        self._scale_at_minimum = False  # DeepSpeed's loss scaler could not lower the scale any further
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
        run, t = self.run, self.cfg
        run.out.mkdir(parents=True, exist_ok=True)
        self._resume()
        st = self.state
        if run.is_main:
            (run.out / records.EFFECTIVE_CONFIG_NAME).write_text(json.dumps(run.effective_config(), indent=1,
                                                                        ensure_ascii=False, default=str))
            self._print_header()
        if st.step == 0 and run.evaluating:
            self._evaluate()
        self.clock.start(st.step)
        if t.eval_time_s is not None:
            self._next_eval_s = (self.clock.state.elapsed_s // t.eval_time_s + 1) * t.eval_time_s

        window = WindowAccumulator(run.device)
        window_t0, paused = time.perf_counter(), 0.0  # paused: evaluation and checkpoint time, not training
        last_saved = st.step if st.step else None
        stop = DONE if st.step >= self.total_steps or self.clock.out_of_time else None
        progress = self._progress()
        task = progress.add_task("pretrain", total=self.total_steps, completed=st.step, loss="-", lr=0.0, tps=0.0,
                                 sps=0.0, last_eval=self._last_eval_text(), upcoming="")
        batches = contextlib.closing(run.data.steps_from(st.step)) if stop is None else contextlib.nullcontext(())
        with progress, batches as steps:
            for epoch, micro_batches in steps:
                if not self._train_step(micro_batches, window):
                    self._halt_non_finite(window, time.perf_counter() - window_t0 - paused, epoch)
                if self._scale_at_minimum or (t.max_consecutive_skipped
                                              and self._skipped_in_a_row >= t.max_consecutive_skipped):
                    self._halt_overflowing(window, time.perf_counter() - window_t0 - paused, epoch)
                st.step += 1
                st.sequences_seen += run.layout.global_batch
                out_of_time, timed_eval = self._clock_tick()
                stop = self._stop_reason(out_of_time)
                epoch_end = st.step % run.data.steps_per_epoch == 0
                save = st.step % t.save_steps == 0 or stop is not None
                # A checkpoint always closes a logging window: the window's sums live only in memory,
                # and a resumed run must not lose the steps between the last log and the save.
                if st.step == 1 or st.step % t.log_steps == 0 or epoch_end or save:
                    elapsed = time.perf_counter() - window_t0 - paused
                    st.train_time_s += elapsed
                    rec = self._log_window(window, elapsed, epoch)
                    progress.update(task, completed=st.step, total=self.total_steps, loss=f"{rec.loss:.4f}",
                                    lr=rec.lr, tps=rec.tokens_per_s, sps=rec.samples_per_s,
                                    upcoming=self._upcoming(elapsed / max(rec.window_steps, 1)))
                    progress.refresh()  # on a terminal: show each window when it closes (a no-op elsewhere)
                    window_t0, paused = time.perf_counter(), 0.0
                t_pause = time.perf_counter()
                if run.evaluating and (stop in (DONE, OUT_OF_TIME) or timed_eval
                                       or (t.eval_steps and st.step % t.eval_steps == 0)):
                    self._evaluate()
                    progress.update(task, last_eval=self._last_eval_text())
                    progress.refresh()
                if save:
                    self._save()
                    last_saved = st.step
                paused += time.perf_counter() - t_pause
                if stop is not None:
                    break
        if last_saved != st.step:
            self._save()
        self.stopped = stop or DONE
        if stop in (STOP_AT_STEP, PREEMPTED):
            if run.is_main:
                why = "--stop_at_step" if stop == STOP_AT_STEP else self.stop_request.signal_name or "a signal on another rank"
                run.console.print(f"stopped at step {st.step} of {self.total_steps} ({why}), checkpoint saved; "
                                  "continue with --resume_from_checkpoint auto")
            return None
        return self._finish()

    def _stop_reason(self, out_of_time: bool) -> str | None:
        step = self.state.step
        if out_of_time:
            self.total_steps = step
            return OUT_OF_TIME
        if step >= self.total_steps:
            return DONE
        if step == self.cfg.stop_at_step:
            return STOP_AT_STEP
        if self.stop_request.agreed(step, self.run.world):
            return PREEMPTED
        return None

    def _train_step(self, micro_batches: list[dict], window: WindowAccumulator) -> bool:
        """One optimizer step over this rank's micro-batches (DeepSpeed accumulates and steps at the boundary).

        Returns False, without applying the update on any rank, when the step's loss is NaN or inf on any rank.
        """
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
            window.add(loss_sum, correct, mb["n_masked"], mb["n_tokens"])
            step_loss += loss_sum.detach().double()
            if i == last:  # DeepSpeed applies the update in this engine.step()
                if self.cfg.stop_on_nonfinite and not self._all_finite(step_loss):
                    window.steps += 1
                    return False
                if self._beta_power_reset is not None:
                    self._beta_power_reset()
            try:
                run.engine.step()
            except Exception as e:  # DeepSpeed's fp16 loss scaler gives up with a bare Exception at its minimum
                if "loss scale already at minimum" not in str(e):
                    raise
                self._scale_at_minimum = True
        window.steps += 1
        if self._scale_at_minimum:
            self.state.skipped_steps += 1
            self._skipped_in_a_row += 1
            return True
        if run.engine.was_step_applied():
            self._skipped_in_a_row = 0
        else:
            self.state.skipped_steps += 1  # fp16 overflow: DeepSpeed skipped the update and lowered the loss scale
            self._skipped_in_a_row += 1
        return True

    def _all_finite(self, step_loss: torch.Tensor) -> bool:
        """Whether every rank's loss of this step is finite: one flag all-reduced and read (a host sync per step,
        the price of never applying a NaN update; --no_stop_on_nonfinite skips it)."""
        return not any_rank(~torch.isfinite(step_loss))

    def _record_failed_step(self, window: WindowAccumulator, elapsed: float, epoch: int):
        """Before a safety stop: count the failed step, log its window, and find the last good checkpoint."""
        self.state.step += 1
        self.state.train_time_s += elapsed
        return self._log_window(window, elapsed, epoch), checkpoint.find(self.run.ckpt_root)

    def _halt_overflowing(self, window: WindowAccumulator, elapsed: float, epoch: int) -> None:
        """fp16 loss scaling skipped every update for a while: the run is training on nothing."""
        run, st = self.run, self.state
        _, last_good = self._record_failed_step(window, elapsed, epoch)
        scaler = getattr(run.engine.optimizer, "loss_scaler", None)
        scale = ""
        if scaler is not None and hasattr(scaler, "cur_scale"):
            scale = f" (loss scale now {scaler.cur_scale:g}, minimum {getattr(scaler, 'min_scale', '?')})"
        raise OverflowStop(
            f"fp16 gradients overflowed at each of the last {self._skipped_in_a_row} steps, up to step {st.step}"
            f"{scale}{', with the loss scale at its minimum' if self._scale_at_minimum else ''}: DeepSpeed skipped "
            "every one of those updates, so the run was training on nothing and "
            f"stopped. {'The last checkpoint is ' + str(last_good) if last_good else 'No checkpoint was saved'}. "
            "Use bf16 where the GPU has it (\"bf16\": {\"enabled\": true}), lower the learning rate, or lower "
            "fp16.min_loss_scale; --max_consecutive_skipped 0 turns this stop off"
        )

    def _halt_non_finite(self, window: WindowAccumulator, elapsed: float, epoch: int) -> None:
        """Record the failed step's window (its loss is not finite) and stop with what to do next."""
        st = self.state
        rec, last_good = self._record_failed_step(window, elapsed, epoch)
        where = (f"the last good checkpoint is {last_good} (resume from it with --resume_from_checkpoint auto "
                 "after the change; it also exports)" if last_good else "no checkpoint was saved before it")
        raise NonFiniteLoss(
            f"the loss of step {st.step} is {rec.loss} (not finite): its update was not applied on any rank and "
            f"training stopped; {where}. Try a lower learning rate (--ds optimizer.params.lr=...), gradient "
            "clipping (\"gradient_clipping\": 1.0 in the DeepSpeed JSON), a longer warmup, or bf16/fp32 instead of fp16"
        )

    # ----------------------------------------------------------------- time
    def _set_total(self, total: int) -> None:
        """A time budget's projection: the schedule decays to zero at ``total`` (schedule.py)."""
        self.total_steps = total
        if self.run.scheduler is not None and hasattr(self.run.scheduler, "total_num_steps"):
            self.run.scheduler.total_num_steps = total

    def _clock_tick(self) -> tuple[bool, bool]:
        """At sync points: agree on the time; returns (out of budget, a timed evaluation is due)."""
        t, step = self.cfg, self.state.step
        if (self.run.budget_s is None and t.eval_time_s is None) or step % SYNC_STEPS:
            return False, False
        elapsed = self.clock.sync(step)
        eval_due = False
        if t.eval_time_s is not None and elapsed >= self._next_eval_s:
            eval_due = True
            self._next_eval_s = (elapsed // t.eval_time_s + 1) * t.eval_time_s
        if self.run.budget_s is None:
            return False, eval_due
        if self.clock.out_of_time:
            return True, eval_due
        self._set_total(max(self.clock.state.projected_total_steps, step + 1))
        return False, eval_due

    # ----------------------------------------------------------------- records
    def _warn(self, warnings: list[str]) -> None:
        for w in warnings:
            if w not in self._warned:
                self._warned.add(w)
                self.run.console.print(f"[yellow]warning:[/] {w}")

    def _append(self, record: records.Record) -> None:
        if self.run.is_main:
            self.log.append(record)
            self._warn(sanity.check_records(self.log.records))

    def _log_window(self, window: WindowAccumulator, elapsed: float, epoch: int) -> TrainWindow:
        run, st = self.run, self.state
        w = window.close()  # the loop's one host sync: the window's sums over all ranks
        st.add_window(w, epoch)
        lr = float(run.scheduler.get_last_lr()[0]) if run.scheduler else float(run.ds_cfg["optimizer"]["params"]["lr"])
        rec = TrainWindow(
            step=st.step, epoch=epoch, loss=w.loss, loss_definition=records.window_definition(w.steps),
            window_steps=w.steps, window_masked_tokens=int(w.masked), accuracy=w.accuracy, lr=lr,
            tokens_seen=st.tokens_seen, sequences_seen=st.sequences_seen,
            tokens_per_s=w.tokens / max(elapsed, 1e-9),
            samples_per_s=w.steps * run.layout.global_batch / max(elapsed, 1e-9), skipped_steps=st.skipped_steps,
            grad_norm=self._grad_norm(),
        )
        self._append(rec)
        self.live.window(rec)
        if run.is_main:
            run.console.print(
                f"step {st.step}{self._of_total()} epoch {epoch}: loss {rec.loss:.4f} (mean over last {w.steps} "
                f"step(s), {int(w.masked):,} masked tokens) acc {rec.accuracy:.3f} lr {lr:.2e} "
                f"{rec.tokens_per_s:,.0f} tokens/s {rec.samples_per_s:.1f} samples/s"
                + (f" grad norm {rec.grad_norm:.3g}" if rec.grad_norm is not None else "")
                + (f" skipped(overflow) {st.skipped_steps}" if st.skipped_steps else "")
            )
        return rec

    def _grad_norm(self) -> float | None:
        norm = self.run.engine.get_global_grad_norm()
        return None if norm is None else float(norm)

    def _evaluate(self) -> Evaluation:
        run, st = self.run, self.state
        t0 = time.perf_counter()
        res = evaluate_engine(run.engine, run.eval_stream, run.layout, self.cfg.eval_max_sequences, run.device)
        unigram = run.manifest.unigram_nats
        ev = Evaluation(**res, step=st.step, tokens_seen=st.tokens_seen, eval_time_s=time.perf_counter() - t0,
                        elapsed_s=self.clock.local_elapsed(), unigram_nats=unigram,
                        below_unigram=None if unigram is None else unigram - res["loss"])
        st.evals.append(ev)
        self._append(ev)
        self.live.evaluation(ev)
        if run.is_main:
            b = ev.below_unigram
            gap = "" if b is None else f", {abs(b):.3f} nats {'below' if b >= 0 else 'above'} the unigram line"
            col = ev.collapse
            col = "" if col is None else f", token cosine {col['token_cosine']:.3f}" + (" COLLAPSED" if col["collapsed"] else "")
            run.console.print(
                f"eval step {st.step}: held-out loss {ev.loss:.4f} (mean over {ev.masked_tokens:,} masked "
                f"tokens in {ev.sequences:,} sequences{gap}), perplexity {ev.perplexity:.2f}, "
                f"accuracy {ev.accuracy:.4f}{col}"
            )
        return ev

    # ----------------------------------------------------------------- checkpoints
    def _checkpoint_record(self) -> dict:
        run = self.run
        return {**self.state.to_dict(run.data.steps_per_epoch, run.layout.global_batch, run.seq_len),
                "config": run.effective_config()}

    def _save(self) -> None:
        run = self.run
        self.clock.sync(self.state.step)  # the checkpoint records the elapsed time (a time budget's resume needs it)
        self.state.clock = self.clock.state
        checkpoint.save(run.engine, run.ckpt_root, self.state.step, self._checkpoint_record(), run.hf_config,
                        run.tokenizer, run.rank, self.cfg.save_total_limit)

    def _check_resume_compatible(self, old: dict) -> None:
        now = self.run.effective_config()
        ours = TokenizerInfo.from_dict(old["data"]["tokenizer"])
        problems = [f"tokenizer {c}" for c in ours.conflicts(TokenizerInfo.from_dict(now["data"]["tokenizer"]))]
        for key in ("seq_len", "steps_per_epoch"):
            if old["data"][key] != now["data"][key]:
                problems.append(f"{key}: checkpoint {old['data'][key]} vs now {now['data'][key]}")
        if old["global_batch"] != now["global_batch"]:
            problems.append(_global_batch_problem(old, now))
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
            if old["model"][key] != now["model"][key]:
                problems.append(f"model {key}: checkpoint {old['model'][key]} vs now {now['model'][key]}")
        if problems:
            raise ValueError("cannot resume: the checkpoint differs from this run:\n  " + "\n  ".join(problems))

    def _resume(self) -> None:
        run = self.run
        tag_dir = checkpoint.resolve_resume(self.cfg.resume_from_checkpoint, run.ckpt_root)
        if tag_dir is None:
            self.state.run_id = uuid.uuid4().hex[:12]  # a new run: its checkpoints carry this id (rotation)
            if run.is_main and self.cfg.resume_from_checkpoint == "auto":
                run.console.print(f"no checkpoint under {run.ckpt_root}: starting from scratch")
                self.log.truncate_after(-1)  # records of an attempt killed before its first checkpoint
            return
        saved = checkpoint.read_state(tag_dir)
        self._check_resume_compatible(saved["config"])
        saved_world = saved["config"]["world_size"]
        if saved_world != run.world and run.is_main:
            run.console.print(f"{tag_dir} was saved by {saved_world} rank(s), this run has {run.world}: loading it "
                              f"through DeepSpeed's universal checkpoint ({tag_dir / checkpoint.UNIVERSAL_DIRNAME}, "
                              "converted once); the data continues at the same global position")
        checkpoint.load(run.engine, tag_dir, run.rank, saved_world=saved_world, world=run.world, seed=self.cfg.seed)
        self.state = TrainState.from_dict(saved)
        self.clock = RunClock(run.budget_s, self.state.clock, device=run.device)
        if run.budget_s is not None and self.clock.state.projected_total_steps:
            self._set_total(self.clock.state.projected_total_steps)
        self.live.resumed(self.state.sequences_seen)
        if run.is_main:
            run.console.print(f"resumed from {tag_dir} at step {self.state.step}")
            self.log.truncate_after(self.state.step)

    # ----------------------------------------------------------------- the end
    def _finish(self) -> RunSummary:
        run, st, t = self.run, self.state, self.cfg
        split = run.manifest.splits["train"]
        summary = RunSummary(
            steps=st.step,
            epochs_completed=st.step / run.data.steps_per_epoch,
            sequences=st.sequences_seen,
            tokens=st.tokens_seen,
            global_batch=run.layout.global_batch,
            seq_len=run.seq_len,
            world_size=run.world,
            precision=run.precision,
            zero_stage=run.ds_cfg.get("zero_optimization", {}).get("stage", 0),
            lr=run.ds_cfg["optimizer"]["params"]["lr"],
            initial_loss=st.initial_loss,
            final_window_loss=st.last_window_loss,
            final_window_steps=st.last_window_steps,
            epoch_mean_loss=st.epoch_mean_loss(),
            skipped_steps=st.skipped_steps,
            dropped_sequences_per_epoch=run.data.dropped_per_epoch,
            eval=st.last_eval.to_dict() if st.last_eval else None,
            eval_initial=st.evals[0].to_dict() if st.evals else None,
            train_time_s=st.train_time_s,
            elapsed_s=self.clock.state.elapsed_s,
            time_budget_s=run.budget_s,
            tokens_per_s=st.tokens_seen / max(st.train_time_s, 1e-9),
            warm_start=run.warm_start_report,
            data={"data_dir": str(Path(t.data_dir).resolve()),
                  "source": run.manifest.source, "train_documents": split.documents,
                  "train_sequences": split.sequences, "train_tokens": split.tokens},
        )
        if run.is_main:
            summary.warnings = sanity.check_run(self.log.records, summary, t.data_dir)
            self._warn(summary.warnings)
            summary.write(run.out)
        if dist.is_initialized():
            dist.barrier()
        return summary

    # ----------------------------------------------------------------- display
    def _of_total(self) -> str:
        if self.run.budget_s is None:
            return f"/{self.total_steps}"
        if self.total_steps == PROJECTION_PLACEHOLDER:
            return ""
        return f"/~{self.total_steps} ({self.clock.agreed_s / 60:.1f} of {self.run.budget_s / 60:.1f} min)"

    def _progress(self) -> Progress:
        """The live view on a terminal (rank 0): progress, the last window and held-out result, what comes next.
        Not on a terminal (a cluster log file), only the plain lines: one per log step, one per evaluation."""
        run = self.run
        return Progress(
            TextColumn("[bold]step {task.completed}/{task.total}"), BarColumn(),
            TextColumn("loss {task.fields[loss]} (last window)"), TextColumn("lr {task.fields[lr]:.2e}"),
            TextColumn("{task.fields[tps]:,.0f} tok/s"), TextColumn("{task.fields[sps]:,.1f} samples/s"),
            TimeRemainingColumn(), TextColumn("| {task.fields[last_eval]} |"), TextColumn("{task.fields[upcoming]}"),
            console=run.console, disable=not run.is_main or not run.console.is_terminal, transient=True,
        )

    def _last_eval_text(self) -> str:
        ev = self.state.last_eval
        return "no held-out result yet" if ev is None else f"held-out {ev.loss:.4f} at step {ev.step}"

    def _upcoming(self, s_per_step: float) -> str:
        """When the next checkpoint and evaluation come, in steps and (at the last window's pace) time."""
        t, step = self.cfg, self.state.step
        parts = []
        if step < self.total_steps:
            nxt = min((step // t.save_steps + 1) * t.save_steps, self.total_steps)  # the last step saves too
            parts.append(f"checkpoint in {_steps(nxt - step)} (~{format_duration((nxt - step) * s_per_step)})")
        if self.run.evaluating and step < self.total_steps:
            if t.eval_time_s is not None and self._next_eval_s is not None:
                parts.append(f"eval in ~{format_duration(max(0.0, self._next_eval_s - self.clock.local_elapsed()))}")
            elif t.eval_steps:
                nxt = min((step // t.eval_steps + 1) * t.eval_steps, self.total_steps)
                parts.append(f"eval in {_steps(nxt - step)} (~{format_duration((nxt - step) * s_per_step)})")
        return ", ".join(parts)

    def _print_header(self) -> None:
        run = self.run
        d = run.data
        arch = run.cfg.model.architecture()
        run.console.print(
            f"roberta-ds: {run.cfg.model.model_size} ({arch}), {run.world} rank(s), precision {run.precision}, "
            f"ZeRO stage {run.ds_cfg.get('zero_optimization', {}).get('stage', 0)}, optimizer "
            f"{optimizer_implementation(run.engine)}\n"
            + (f"{engine.LAUNCH.describe()}\n" if engine.LAUNCH is not None else "")
            + f"data: {len(run.train_stream):,} training sequences of {run.seq_len} tokens, global batch "
            f"{run.layout.global_batch} = micro {run.layout.micro_batch} x accumulation {run.layout.grad_accum} "
            f"x {run.world} rank(s); {d.steps_per_epoch} steps/epoch ({d.dropped_per_epoch} sequences per epoch "
            f"left over and skipped); "
            + (f"{self.total_steps} steps in all\n" if run.budget_s is None else
               f"time budget {self.cfg.time_budget} (the step count follows the clock)\n")
            + f"effective configs (all of them): {run.out / 'effective_config.json'}"
        )
        run.console.print("effective DeepSpeed config: " + json.dumps(run.ds_cfg, sort_keys=True))
        self._warn(run.data_warnings)
        coverage = run.train_stream.shuffle_coverage()
        if coverage:
            self._warn([coverage])
        if run.warm_start_report:
            run.console.print(f"warm start from {self.cfg.init_from}: {run.warm_start_report}")


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def _global_batch_problem(old: dict, now: dict) -> str:
    """The global batch must survive a resume (the data position and the schedule are counted in it); say which
    micro batch and accumulation give the saved one at this world size."""
    gb, world = old["global_batch"], now["world_size"]
    ds = now["deepspeed"]
    text = (f"global batch: checkpoint {gb} vs now {now['global_batch']} = micro "
            f"{ds['train_micro_batch_size_per_gpu']} x accumulation {ds['gradient_accumulation_steps']} x {world} "
            f"rank(s). It must stay the same to continue the data and the schedule exactly")
    if gb % world:
        return text + f"; {gb} sequences do not split evenly over {world} ranks: use a world size that divides {gb}"
    per_rank = gb // world
    accum = next(a for a in range(1, per_rank + 1) if per_rank % a == 0
                 and per_rank // a <= max(ds["train_micro_batch_size_per_gpu"], 1))
    return (text + f": at {world} rank(s) use --ds train_micro_batch_size_per_gpu={per_rank // accum} "
            f"--ds gradient_accumulation_steps={accum}")
