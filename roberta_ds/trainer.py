"""The training loop: step, maybe-log, maybe-eval, maybe-save; final eval, save and export exactly once.

Loss bookkeeping (the original run's "final loss 0.19" divided a sum reset every 5,000
steps by all 42,875 steps): every printed loss is a masked-token-weighted mean of
cross-entropy over a stated set of steps, summed over all ranks.

The gradient of a step is d(sum of CE over the global batch's masked tokens) / (global
masked-token count): each rank scales its micro-batch loss by world_size / global_count
because DeepSpeed averages gradients over ranks, and we pass scale_wrt_gas=False so
DeepSpeed does not divide again by the accumulation steps. The result does not depend
on how the global batch is split over ranks and micro-steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from roberta_ds import checkpoint, ds_config, sanity
from roberta_ds.config import RunConfig
from roberta_ds.data import Layout, PretrainingData, ShardStream, model_inputs, to_device
from roberta_ds.engine import build_engine, device, init_distributed
from roberta_ds.evaluation import evaluate_engine
from roberta_ds.export import export_checkpoint
from roberta_ds.masking import EVAL_MASK_SEED, Masker
from roberta_ds.model import SparseMaskedLM, build_model, roberta_config
from roberta_ds.schedule import SYNC_STEPS, TIME_SCHEDULERS, ClockState, RunClock
from roberta_ds.shard_format import TOKENIZER_DIRNAME, ShardFormatError, read_manifest
from roberta_ds.tokenizer import TokenizerInfo, load_tokenizer, tokenizer_info
from roberta_ds.warm_start import init_from_pretrained

PROJECTION_PLACEHOLDER = 10**9
"""total_num_steps of a time-budgeted schedule before the first projection (the run is still in warmup)."""

SUMMARY_DEFINITIONS = {
    "loss": "mean cross-entropy (nats) per masked token, weighted by masked tokens, over all ranks",
    "initial_loss": "loss of the first optimizer step",
    "final_window_loss": "loss over the last logging window (final_window_steps steps)",
    "epoch_mean_loss": "loss over all steps of each epoch (partial for an unfinished epoch)",
    "eval": "held-out loss/perplexity/accuracy on the validation split at a fixed 15 % masking, seed EVAL_MASK_SEED",
    "tokens": "non-padding tokens processed in training, all ranks",
    "tokens_per_s": "tokens / training wall time (excluding evaluation, checkpointing and start-up)",
}


class Trainer:
    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        t = cfg.train
        self.rank, self.world, _ = init_distributed()
        self.is_main = self.rank == 0
        self.console = Console(stderr=False, force_terminal=None)
        self.out = Path(t.output_dir)
        self.ckpt_root = self.out / "checkpoints"
        self.dev = device()

        root = Path(t.data_dir)
        self.manifest = read_manifest(root)
        self.tokenizer = load_tokenizer(root / TOKENIZER_DIRNAME)
        tok = self.manifest.tokenizer
        conflicts = tokenizer_info(self.tokenizer, str(root / TOKENIZER_DIRNAME)).conflicts(tok)
        if conflicts:
            raise ValueError(
                f"{root}/tokenizer does not match the manifest:\n  " + "\n  ".join(conflicts)
                + "\nRe-run `python -m data_tools pack` to rebuild the shards."
            )
        self.records: list[dict] = []  # metrics.jsonl so far (rank 0), for the sanity checks
        self._warned: set[str] = set()
        if self.is_main:
            self._warn(sanity.check_data(root, self.manifest))
        if cfg.masking.wwm and not self.manifest.wwm:
            raise ValueError(f"--wwm needs shards packed with --wwm; {root} has none (re-run data_tools pack --wwm)")
        self.seq_len = t.max_seq_length or self.manifest.max_seq_length

        # Engine config: resolve "auto" against the data (total steps) and the hardware (precision).
        raw = ds_config.load_ds_config(t.ds_config, t.ds_overrides)
        micro, accum = ds_config.batch_layout(raw)
        self.layout = Layout(micro_batch=micro, grad_accum=accum, world_size=self.world, rank=self.rank)
        self.train_stream = ShardStream(root, self.manifest, "train", self.seq_len, t.seed, True, t.shuffle_buffer)
        self.masker = Masker(cfg.masking, tok)
        self.data = PretrainingData(self.train_stream, self.layout, self.masker, t.seed, t.num_workers)
        spe = self.data.steps_per_epoch
        self.budget_s = t.time_budget_s
        if self.budget_s is None:
            self.total_steps = t.max_steps or max(1, round((t.num_train_epochs or 1.0) * spe))
        else:
            self._check_time_schedule(raw)
            # A placeholder until the first sync point projects the steps that fit in the budget (schedule.py);
            # until then the run is in warmup.
            self.total_steps = PROJECTION_PLACEHOLDER
        self.ds_cfg = ds_config.resolve(raw, total_steps=self.total_steps, world_size=self.world)
        self.precision = ds_config.precision(self.ds_cfg)
        ds_config.check_device_precision(self.ds_cfg)

        # Model: fresh, or warm-started from a Hugging Face directory.
        self.hf_config = roberta_config(cfg.model, tok, self.seq_len)
        mlm = build_model(self.hf_config, t.seed, cfg.model.position_init)
        self.warm_start_report = None
        if t.init_from:
            self.warm_start_report = init_from_pretrained(mlm, t.init_from, tok, self.seq_len)
        self.engine, self.scheduler = build_engine(SparseMaskedLM(mlm), self.ds_cfg)
        # The engine reports the batch layout; check it is what our data layout assumed.
        got = (self.engine.train_micro_batch_size_per_gpu(), self.engine.gradient_accumulation_steps())
        if got != (micro, accum):
            raise RuntimeError(f"DeepSpeed batch layout {got} differs from the config's {(micro, accum)}")

        self.eval_stream = None
        if (t.eval_steps or t.eval_time) and "validation" in self.manifest.splits and self.manifest.splits["validation"].shards:
            self.eval_stream = ShardStream(root, self.manifest, "validation", self.seq_len, EVAL_MASK_SEED, False)
        elif (t.eval_steps or t.eval_time) and self.is_main:
            self.console.print("[yellow]warning:[/] --eval_steps set but the shards have no validation split; "
                               "no held-out evaluation (pack with --val_fraction > 0)")

        # Counters (restored on resume).
        self.step = 0
        self.sequences_seen = 0
        self.tokens_seen = 0
        self.skipped_steps = 0
        self.initial_loss: float | None = None
        self.epoch_sums: dict[int, list[float]] = {}
        self.train_time = 0.0
        self.last_eval: dict | None = None
        self._last_window: tuple[float | None, int] = (None, 0)  # (loss, steps) of the newest logging window
        self.evals: list[dict] = []
        self.clock = RunClock(self.budget_s, device=self.dev)

    def _check_time_schedule(self, raw: dict) -> None:
        sched = raw.get("scheduler")
        if sched is None:
            return  # constant lr: the budget only decides where the run stops
        total = sched.get("params", {}).get("total_num_steps")
        if sched.get("type") not in TIME_SCHEDULERS or total != ds_config.AUTO:
            raise ValueError(
                f"--time_budget needs a scheduler whose decay the budget can place: one of {list(TIME_SCHEDULERS)} "
                f"with \"total_num_steps\": \"auto\" (the DeepSpeed config has {sched.get('type')!r} with "
                f"total_num_steps {total!r}); or remove the scheduler section for a constant lr"
            )

    # ----------------------------------------------------------------- bookkeeping
    def effective_config(self) -> dict:
        return {
            "run": self.cfg.to_dict(),
            "deepspeed": self.ds_cfg,
            "model": self.hf_config.to_dict(),
            "data": {
                "data_dir": str(Path(self.cfg.train.data_dir).resolve()),
                "tokenizer": self.manifest.tokenizer.to_dict(),
                "packed_length": self.manifest.max_seq_length,
                "seq_len": self.seq_len,
                "train_sequences": len(self.train_stream),
                "steps_per_epoch": self.data.steps_per_epoch,
                "dropped_sequences_per_epoch": self.data.dropped_per_epoch,
                "source": self.manifest.source,
            },
            "world_size": self.world,
            "global_batch": self.layout.global_batch,
            "total_steps": None if self.budget_s is not None else self.total_steps,
            "time_budget_s": self.budget_s,
            "precision": self.precision,
        }

    def state(self) -> dict:
        spe = self.data.steps_per_epoch
        return {
            "step": self.step,
            "epoch": self.step // spe,
            "data_cursor": {"epoch": self.step // spe, "step_in_epoch": self.step % spe,
                            "global_batch": self.layout.global_batch, "seq_len": self.seq_len},
            "sequences_seen": self.sequences_seen,
            "tokens_seen": self.tokens_seen,
            "skipped_steps": self.skipped_steps,
            "initial_loss": self.initial_loss,
            "epoch_sums": {str(k): v for k, v in self.epoch_sums.items()},
            "train_time_s": self.train_time,
            "last_window": list(self._last_window),
            "evals": self.evals,
            "clock": {"elapsed_s": self.clock.state.elapsed_s,
                      "projected_total_steps": self.clock.state.projected_total_steps},
            "config": self.effective_config(),
        }

    def _check_resume_compatible(self, state: dict) -> None:
        old = state["config"]
        now = self.effective_config()
        ours = TokenizerInfo.from_dict(old["data"]["tokenizer"])
        problems = [f"tokenizer {c}" for c in ours.conflicts(TokenizerInfo.from_dict(now["data"]["tokenizer"]))]
        for key in ("seq_len", "steps_per_epoch"):
            if old["data"][key] != now["data"][key]:
                problems.append(f"{key}: checkpoint {old['data'][key]} vs now {now['data'][key]}")
        if old["world_size"] != now["world_size"]:
            problems.append(f"world size: checkpoint {old['world_size']} vs now {now['world_size']} (resume with the "
                            "same number of processes: DeepSpeed's ZeRO optimizer state is sharded per rank)")
        if old["global_batch"] != now["global_batch"]:
            problems.append(f"global batch: checkpoint {old['global_batch']} vs now {now['global_batch']} "
                            "(micro batch x accumulation x ranks must stay the same to resume the data exactly)")
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
            if old["model"][key] != now["model"][key]:
                problems.append(f"model {key}: checkpoint {old['model'][key]} vs now {now['model'][key]}")
        if problems:
            raise ValueError("cannot resume: the checkpoint differs from this run:\n  " + "\n  ".join(problems))

    def _resume(self) -> None:
        tag_dir = checkpoint.resolve_resume(self.cfg.train.resume_from_checkpoint, self.ckpt_root)
        if tag_dir is None:
            if self.is_main and self.cfg.train.resume_from_checkpoint == "auto":
                self.console.print(f"no checkpoint under {self.ckpt_root}: starting from scratch")
            return
        s = checkpoint.read_state(tag_dir)
        self._check_resume_compatible(s)
        checkpoint.load(self.engine, tag_dir, self.rank)
        self.step = s["step"]
        self.sequences_seen, self.tokens_seen = s["sequences_seen"], s["tokens_seen"]
        self.skipped_steps, self.initial_loss = s["skipped_steps"], s["initial_loss"]
        self.epoch_sums = {int(k): v for k, v in s["epoch_sums"].items()}
        self.train_time = s["train_time_s"]
        self._last_window = tuple(s["last_window"])
        self.evals = s["evals"]
        self.last_eval = self.evals[-1] if self.evals else None
        self.clock = RunClock(self.budget_s, ClockState(**s.get("clock", {})), device=self.dev)
        if self.budget_s is not None and self.clock.state.projected_total_steps:
            self._set_total(self.clock.state.projected_total_steps)
        if self.is_main:
            self.console.print(f"resumed from {tag_dir} at step {self.step}")
            # Records past the checkpoint are about to be recomputed identically: drop them.
            path = self.out / "metrics.jsonl"
            if path.exists():
                keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= self.step]
                path.write_text("".join(k + "\n" for k in keep))
                self.records = [json.loads(k) for k in keep]

    def _warn(self, warnings: list[str]) -> None:
        for w in warnings:
            if w not in self._warned:
                self._warned.add(w)
                self.console.print(f"[yellow]warning:[/] {w}")

    def _log_record(self, record: dict) -> None:
        if self.is_main:
            with (self.out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
            self.records.append(record)
            self._warn(sanity.check_records(self.records))

    # ----------------------------------------------------------------- phases
    def _train_step(self, micro_batches: list[dict], acc: torch.Tensor, host: list[int]) -> None:
        """One optimizer step. ``acc`` (device) accumulates [loss_sum, correct]; ``host`` [masked, tokens]."""
        on_device = [to_device(mb, self.dev) for mb in micro_batches]
        n_global = torch.stack([b["n_masked_tensor"] for b in on_device]).sum()
        if self.world > 1:
            dist.all_reduce(n_global)
        scale = self.world / n_global.clamp(min=1.0)
        for mb, inputs in zip(micro_batches, on_device):
            loss_sum, correct = self.engine(**model_inputs(inputs))
            self.engine.backward(loss_sum * scale, scale_wrt_gas=False)
            self.engine.step()
            # Accumulate on the device; the host reads it only at log time (no per-step sync).
            acc += torch.stack([loss_sum.detach().double(), correct.double()])
            host[0] += mb["n_masked"]
            host[1] += mb["n_tokens"]
        if not self.engine.was_step_applied():
            self.skipped_steps += 1  # fp16 overflow: DeepSpeed skipped the update and lowered the loss scale

    def _evaluate(self) -> dict | None:
        if self.eval_stream is None:
            return None
        t0 = time.perf_counter()
        res = evaluate_engine(self.engine, self.eval_stream, self.layout, self.cfg.train.eval_max_sequences, self.dev)
        res.update(kind="eval", step=self.step, tokens_seen=self.tokens_seen, eval_time_s=time.perf_counter() - t0,
                   elapsed_s=self.clock.local_elapsed(), unigram_nats=self.manifest.unigram_nats)
        if res["unigram_nats"] is not None:
            res["below_unigram"] = res["unigram_nats"] - res["loss"]
        self.evals.append(res)
        self.last_eval = res
        self._log_record(res)
        if self.is_main:
            b = res.get("below_unigram")
            gap = "" if b is None else f", {abs(b):.3f} nats {'below' if b >= 0 else 'above'} the unigram line"
            col = res.get("collapse")
            col = "" if col is None else f", token cosine {col['token_cosine']:.3f}" + (" COLLAPSED" if col["collapsed"] else "")
            self.console.print(
                f"eval step {self.step}: held-out loss {res['loss']:.4f} (mean over {res['masked_tokens']:,} masked "
                f"tokens in {res['sequences']:,} sequences{gap}), perplexity {res['perplexity']:.2f}, "
                f"accuracy {res['accuracy']:.4f}{col}"
            )
        return res

    def _of_total(self) -> str:
        if self.budget_s is None:
            return f"/{self.total_steps}"
        if self.total_steps == PROJECTION_PLACEHOLDER:
            return ""
        return f"/~{self.total_steps} ({self.clock.agreed_s / 60:.1f} of {self.budget_s / 60:.1f} min)"

    def _set_total(self, total: int) -> None:
        """A time budget's projection: the schedule decays to zero at ``total`` (schedule.py)."""
        self.total_steps = total
        if self.scheduler is not None and hasattr(self.scheduler, "total_num_steps"):
            self.scheduler.total_num_steps = total

    def _clock_tick(self) -> tuple[bool, bool]:
        """At sync points: agree on the time; returns (out of budget, a timed evaluation is due)."""
        t = self.cfg.train
        if (self.budget_s is None and t.eval_time_s is None) or self.step % SYNC_STEPS:
            return False, False
        elapsed = self.clock.sync(self.step)
        eval_due = False
        if t.eval_time_s is not None and elapsed >= self._next_eval_s:
            eval_due = True
            self._next_eval_s = (elapsed // t.eval_time_s + 1) * t.eval_time_s
        if self.budget_s is None:
            return False, eval_due
        if self.clock.out_of_time:
            return True, eval_due
        self._set_total(max(self.clock.state.projected_total_steps, self.step + 1))
        return False, eval_due

    def _save(self) -> Path:
        self.clock.sync(self.step)  # the checkpoint records the elapsed time (a time budget's resume needs it)
        return checkpoint.save(self.engine, self.ckpt_root, self.step, self.state(), self.hf_config,
                               self.tokenizer, self.rank, self.cfg.train.save_total_limit)

    def train(self) -> dict:
        t = self.cfg.train
        self.out.mkdir(parents=True, exist_ok=True)
        self._resume()
        if self.is_main:
            (self.out / "effective_config.json").write_text(json.dumps(self.effective_config(), indent=1,
                                                                         ensure_ascii=False, default=str))
            self._print_header()
        evaluating = bool(t.eval_steps or t.eval_time)
        if self.step == 0 and evaluating:
            self._evaluate()
        self.clock.start(self.step)
        if t.eval_time_s is not None:
            self._next_eval_s = (self.clock.state.elapsed_s // t.eval_time_s + 1) * t.eval_time_s

        spe = self.data.steps_per_epoch
        acc = torch.zeros(2, dtype=torch.float64, device=self.dev)  # loss_sum, correct (on the device)
        host = [0, 0]  # masked tokens, real tokens (known on the host from the loader)
        window_steps, window_t0, paused = 0, time.perf_counter(), 0.0  # paused: eval/save time, not training
        last_saved = self.step if self.step else None
        stop_now = False
        progress = self._progress()
        task = progress.add_task("pretrain", total=self.total_steps, completed=self.step, loss="-", lr=0.0, tps=0.0,
                                 sps=0.0)
        finished = self.step >= self.total_steps or self.clock.out_of_time
        with progress:
            while not finished:
                epoch, start = divmod(self.step, spe)
                boundary = False
                for micro_batches in self.data.steps(epoch, start):
                    self._train_step(micro_batches, acc, host)
                    self.step += 1
                    window_steps += 1
                    self.sequences_seen += self.layout.global_batch
                    out_of_time, timed_eval = self._clock_tick()
                    last_step = self.step == self.total_steps or out_of_time
                    if out_of_time:
                        self.total_steps = self.step
                    finished = last_step
                    stop_now = self.step == t.stop_at_step and not last_step
                    epoch_end = self.step % spe == 0
                    save = self.step % t.save_steps == 0 or last_step or stop_now
                    # A checkpoint always closes a logging window: the window's sums live only in memory,
                    # and a resumed run must not lose the steps between the last log and the save.
                    if self.step == 1 or self.step % t.log_steps == 0 or epoch_end or save:
                        elapsed = time.perf_counter() - window_t0 - paused
                        self.train_time += elapsed
                        rec = self._log_window(acc, host, window_steps, elapsed, epoch)
                        progress.update(task, completed=self.step, total=self.total_steps, loss=f"{rec['loss']:.4f}", lr=rec["lr"],
                                        tps=rec["tokens_per_s"], sps=rec["samples_per_s"])
                        acc.zero_()
                        host = [0, 0]
                        window_steps, window_t0, paused = 0, time.perf_counter(), 0.0
                    t_pause = time.perf_counter()
                    if evaluating and (last_step or timed_eval or (t.eval_steps and self.step % t.eval_steps == 0)):
                        self._evaluate()
                    if save:
                        self._save()
                        last_saved = self.step
                    paused += time.perf_counter() - t_pause
                    boundary = last_step or epoch_end or stop_now
                    if boundary:
                        break
                if not boundary:
                    # The shards yielded fewer batches than their manifest promises: re-reading would loop forever.
                    raise ShardFormatError(
                        f"epoch {epoch} of {self.cfg.train.data_dir} ended after {self.step % spe} of {spe} steps: "
                        "the shards do not match their manifest; run `python -m data_tools verify` on them"
                    )
                if stop_now:
                    break
        if last_saved != self.step:
            self._save()
        if not finished:
            if self.is_main:
                self.console.print(f"stopped at step {self.step} of {self.total_steps} (--stop_at_step); "
                                   "continue with --resume_from_checkpoint auto")
            return self.state()
        return self._finish()

    def _log_window(self, acc: torch.Tensor, host: list[int], window_steps: int, elapsed: float, epoch: int) -> dict:
        # The one host sync of the loop: sum the window over ranks and read it.
        total = torch.cat([acc, torch.tensor(host, dtype=torch.float64, device=self.dev)])
        if self.world > 1:
            dist.all_reduce(total)
        loss_sum, correct, masked, tokens = total.tolist()
        loss = loss_sum / max(masked, 1.0)
        if self.initial_loss is None:
            self.initial_loss = loss
        self.tokens_seen += int(tokens)
        es = self.epoch_sums.setdefault(epoch, [0.0, 0.0, 0.0, 0.0])
        for i, v in enumerate((loss_sum, masked, tokens, window_steps)):
            es[i] += v
        rec = {
            "kind": "train", "step": self.step, "epoch": epoch, "loss": loss,
            "loss_definition": f"mean CE per masked token over the last {window_steps} step(s), all ranks",
            "window_steps": window_steps, "window_masked_tokens": int(masked), "accuracy": correct / max(masked, 1.0),
            "lr": float(self.scheduler.get_last_lr()[0]) if self.scheduler else float(self.ds_cfg["optimizer"]["params"]["lr"]),
            "tokens_seen": self.tokens_seen, "sequences_seen": self.sequences_seen,
            "tokens_per_s": tokens / max(elapsed, 1e-9),
            "samples_per_s": window_steps * self.layout.global_batch / max(elapsed, 1e-9),
            "skipped_steps": self.skipped_steps,
        }
        self._log_record(rec)
        if self.is_main:
            self.console.print(
                f"step {self.step}{self._of_total()} epoch {epoch}: loss {loss:.4f} (mean over last {window_steps} "
                f"step(s), {int(masked):,} masked tokens) acc {rec['accuracy']:.3f} lr {rec['lr']:.2e} "
                f"{rec['tokens_per_s']:,.0f} tokens/s {rec['samples_per_s']:.1f} samples/s"
                + (f" skipped(overflow) {self.skipped_steps}" if self.skipped_steps else "")
            )
        self._last_window = (loss, window_steps)
        return rec

    def _finish(self) -> dict:
        t = self.cfg.train
        tag_dir = self.ckpt_root / checkpoint.tag_for(self.step)
        if self.is_main:
            export_checkpoint(tag_dir, self.out / "final_model")
            self.console.print(f"exported Hugging Face model to {self.out / 'final_model'}")
        final_loss, final_window = self._last_window
        summary = {
            "steps": self.step,
            "epochs_completed": self.step / self.data.steps_per_epoch,
            "sequences": self.sequences_seen,
            "tokens": self.tokens_seen,
            "global_batch": self.layout.global_batch,
            "seq_len": self.seq_len,
            "world_size": self.world,
            "precision": self.precision,
            "zero_stage": self.ds_cfg.get("zero_optimization", {}).get("stage", 0),
            "lr": self.ds_cfg["optimizer"]["params"]["lr"],
            "initial_loss": self.initial_loss,
            "final_window_loss": final_loss,
            "final_window_steps": final_window,
            "epoch_mean_loss": {str(e): s[0] / max(s[1], 1.0) for e, s in sorted(self.epoch_sums.items())},
            "skipped_steps": self.skipped_steps,
            "dropped_sequences_per_epoch": self.data.dropped_per_epoch,
            "eval": self.last_eval,
            "eval_initial": self.evals[0] if self.evals else None,
            "train_time_s": self.train_time,
            "elapsed_s": self.clock.state.elapsed_s,
            "time_budget_s": self.budget_s,
            "tokens_per_s": self.tokens_seen / max(self.train_time, 1e-9),
            "warm_start": self.warm_start_report,
            "data": {"data_dir": str(Path(t.data_dir).resolve()), "source": self.manifest.source,
                     "train_documents": self.manifest.splits["train"].documents,
                     "train_sequences": self.manifest.splits["train"].sequences,
                     "train_tokens": self.manifest.splits["train"].tokens},
            "definitions": SUMMARY_DEFINITIONS,
        }
        if self.is_main:
            summary["warnings"] = sanity.check_run(self.records, summary, t.data_dir)
            self._warn(summary["warnings"])
            (self.out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False, default=str))
        if dist.is_initialized():
            dist.barrier()
        return summary

    # ----------------------------------------------------------------- display
    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]step {task.completed}/{task.total}"), BarColumn(),
            TextColumn("loss {task.fields[loss]} (last window)"), TextColumn("lr {task.fields[lr]:.2e}"),
            TextColumn("{task.fields[tps]:,.0f} tok/s"), TextColumn("{task.fields[sps]:,.1f} samples/s"),
            TimeRemainingColumn(),
            console=self.console, disable=not self.is_main or not self.console.is_terminal, transient=True,
        )

    def _print_header(self) -> None:
        d = self.data
        arch = self.cfg.model.architecture()
        self.console.print(
            f"roberta-ds: {self.cfg.model.model_size} ({arch}), {self.world} rank(s), precision {self.precision}, "
            f"ZeRO stage {self.ds_cfg.get('zero_optimization', {}).get('stage', 0)}\n"
            f"data: {len(self.train_stream):,} training sequences of {self.seq_len} tokens, global batch "
            f"{self.layout.global_batch} = micro {self.layout.micro_batch} x accumulation {self.layout.grad_accum} "
            f"x {self.world} rank(s); {d.steps_per_epoch} steps/epoch ({d.dropped_per_epoch} sequences per epoch "
            f"left over and skipped); "
            + (f"{self.total_steps} steps in all\n" if self.budget_s is None else
               f"time budget {self.cfg.train.time_budget} (the step count follows the clock)\n")
            + f"effective configs (all of them): {self.out / 'effective_config.json'}"
        )
        self.console.print("effective DeepSpeed config: " + json.dumps(self.ds_cfg, sort_keys=True))
        coverage = self.train_stream.shuffle_coverage()
        if coverage:
            self._warn([coverage])
        if self.warm_start_report:
            self.console.print(f"warm start from {self.cfg.train.init_from}: {self.warm_start_report}")
