"""A run's records: the on-disk format of its numbers, and the one place each metric is defined.

    RUN/metrics.jsonl   one JSON object per line: a TrainWindow ("kind": "train") or an Evaluation ("kind": "eval")
    RUN/summary.json    the RunSummary, written once when the run finishes

The trainer writes through this module; the sanity checks, the report and the tests read through it.
Every record carries ``"version"``. Version 1 (files written before this module existed) has no
``"version"`` key and the same fields: it reads the same way. Version 3 added ``grad_norm`` to the
training windows (None when read from an older file); version 4 the mixture and phase fields (``seq_len``,
``phase``, ``sources``, ``lengths``), written only by runs that have them. Readers ignore keys they do not know,
so a newer writer's extra fields do not break an older reader.

Loss bookkeeping (the original run's "final loss 0.19" divided a sum reset every 5,000 steps by all
42,875 steps): every loss here is a sum of cross-entropy over masked tokens divided by the number of
those tokens, over a stated set of steps (a window, an epoch, an evaluation), summed over all ranks.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from roberta_ds.reading.masking import EVAL_MASK_SEED, EVAL_MASKING

VERSION = 4
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
PROBE_NAME = "probe.json"
"""launcher/probe.py --out RUN/probe.json: the report and the model card show it when present (the demo writes it)."""
EFFECTIVE_CONFIG_NAME = "effective_config.json"
CHECKPOINTS_DIRNAME = "checkpoints"
FINAL_MODEL_DIRNAME = "final_model"
RUN_ENTRIES = (METRICS_NAME, SUMMARY_NAME, EFFECTIVE_CONFIG_NAME, CHECKPOINTS_DIRNAME, FINAL_MODEL_DIRNAME, "wandb_run_id")
"""What a pretraining run writes into its --output_dir: a directory holding any of them holds a run."""


def refuse_used_run_dir(out: Path) -> None:
    """A new run (no --resume_from_checkpoint) must not write into another run's directory: its metrics would be
    appended to the old run's, and checkpoint rotation would mix the two runs' checkpoints."""
    used = [n for n in RUN_ENTRIES if (out / n).exists() and not ((out / n).is_dir() and not any((out / n).iterdir()))]
    if used:
        raise ValueError(
            f"--output_dir {out} already holds a run ({', '.join(used)}). Continue that run with "
            "--resume_from_checkpoint auto, or start a new one with another --output_dir; nothing was changed.")

# ---------------------------------------------------------------------------- definitions
LOSS = "mean cross-entropy (nats) per masked token, weighted by masked tokens, over all ranks"
"""The one definition of "loss"; windows, epochs and evaluations differ only in the steps or sequences summed."""


def window_definition(steps: int) -> str:
    return f"mean CE per masked token over the last {steps} step(s), all ranks"


COLLAPSE_SEQUENCES = 64
"""Held-out sequences (per rank, the first ones it evaluates) whose hidden states the collapse check uses."""
COLLAPSE_TOKENS = 1024
"""Token vectors (evenly spaced over those sequences' real tokens) in the token-cosine matrix."""
COLLAPSE_TOKEN_COSINE = 0.98
"""Mean pairwise cosine between different tokens' final hidden states above which the encoder has collapsed.
A trained encoder keeps tokens apart (well below 0.9); the collapsed demo model measured 0.99999988."""

EVAL_DEFINITIONS = {
    "loss": "sum of cross-entropy (nats) over masked tokens / masked tokens, all ranks",
    "perplexity": "exp(loss)",
    "accuracy": "masked tokens predicted exactly (argmax) / masked tokens",
    "masking": f"{EVAL_MASKING.mask_prob:.0%} of non-special tokens, 80/10/10 [MASK]/random/kept, seed {EVAL_MASK_SEED}",
    "collapse": (
        f"final hidden states of the first (up to) {COLLAPSE_SEQUENCES} held-out sequences on rank 0: token_cosine = "
        f"mean cosine between {COLLAPSE_TOKENS} evenly spaced real-token vectors (pairs of different tokens), "
        "sequence_cosine = mean cosine between the sequences' mean-pooled vectors, cls_relative_spread = RMS "
        "distance of the [CLS] vectors from their mean / their mean norm; collapsed = token_cosine > "
        f"{COLLAPSE_TOKEN_COSINE}"
    ),
}

SUMMARY_DEFINITIONS = {
    "loss": LOSS,
    "initial_loss": "loss of the first optimizer step",
    "final_window_loss": "loss over the last logging window (final_window_steps steps)",
    "epoch_mean_loss": "loss over all steps of each epoch (partial for an unfinished epoch)",
    "eval": f"held-out loss/perplexity/accuracy on the validation split, masking {EVAL_DEFINITIONS['masking']}",
    "tokens": "non-padding tokens processed in training, all ranks",
    "tokens_per_s": "tokens / training wall time (excluding evaluation, checkpointing and start-up)",
    "sources": "per mixture source: training sequences and non-padding tokens read from it, all ranks, and epochs = "
               "sequences / the source's training sequences at each phase's length, summed over phases",
    "phases": "per phase: its length, optimizer steps, sequences and non-padding tokens, all ranks",
}


def eval_metrics(loss_sum: float, correct: float, masked: float, sequences: float) -> dict:
    """Held-out metrics from their all-rank sums (EVAL_DEFINITIONS)."""
    loss = loss_sum / masked if masked else float("nan")
    return {
        "loss": loss,
        "perplexity": math.exp(loss) if masked and loss < 700 else float("inf"),
        "accuracy": correct / masked if masked else float("nan"),
        "masked_tokens": int(masked),
        "sequences": int(sequences),
        "definitions": EVAL_DEFINITIONS,
    }


# ---------------------------------------------------------------------------- records
class _Record:
    KIND: ClassVar[str]
    ONLY_WHEN_SET: ClassVar[tuple[str, ...]] = ()
    """Fields written only when they hold a value (what only mixtures and phases fill in): a single-directory
    run's records stay as they were."""

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in self.ONLY_WHEN_SET:
            if d.get(name) is None:
                d.pop(name, None)
        return {"kind": self.KIND, "version": VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in d]
        if missing:
            raise ValueError(f"a {cls.KIND!r} record lacks {missing}: {json.dumps(d)[:200]}")
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TrainWindow(_Record):
    """Training over one logging window: the steps since the previous window, summed over all ranks."""

    KIND: ClassVar[str] = "train"
    ONLY_WHEN_SET: ClassVar[tuple[str, ...]] = ("seq_len", "phase", "sources")
    step: int
    epoch: int
    loss: float
    """window_definition(window_steps)"""
    window_steps: int
    window_masked_tokens: int
    tokens_seen: int
    accuracy: float | None = None
    lr: float | None = None
    sequences_seen: int | None = None
    tokens_per_s: float | None = None
    samples_per_s: float | None = None
    skipped_steps: int = 0
    loss_definition: str = ""
    grad_norm: float | None = None
    """2-norm of all gradients at the window's last step, before clipping (DeepSpeed's get_global_grad_norm;
    None where DeepSpeed does not compute it: ZeRO stage 0 in fp32)."""
    seq_len: int | None = None
    """The window's sequence length (runs with --phases; a window never spans two phases)."""
    phase: int | None = None
    """0-based phase of the window (runs with --phases)."""
    sources: dict | None = None
    """Mixtures: per source name, the window's {"sequences", "tokens", "share"} (share = its tokens / the window's),
    all ranks."""


@dataclass
class Evaluation(_Record):
    """Held-out metrics at one step (EVAL_DEFINITIONS), with the collapse check and the unigram line."""

    KIND: ClassVar[str] = "eval"
    ONLY_WHEN_SET: ClassVar[tuple[str, ...]] = ("seq_len", "sources", "lengths")
    step: int
    loss: float
    perplexity: float | None = None
    accuracy: float | None = None
    masked_tokens: int | None = None
    sequences: int | None = None
    tokens_seen: int | None = None
    eval_time_s: float | None = None
    elapsed_s: float | None = None
    unigram_nats: float | None = None
    below_unigram: float | None = None
    """unigram_nats - loss: how far the run is below "no context learned"."""
    collapse: dict | None = None
    definitions: dict = field(default_factory=lambda: EVAL_DEFINITIONS)
    seq_len: int | None = None
    """Length of the evaluated sequences (mixtures and phases: the run's final length, the one the export is used
    at; the other phases' lengths are in ``lengths``)."""
    sources: dict | None = None
    """Mixtures: per source name, that source's validation metrics at ``seq_len`` (loss, perplexity, accuracy,
    masked_tokens, sequences, unigram_nats, below_unigram); the top-level numbers are their masked-token-weighted
    total."""
    lengths: dict | None = None
    """Phases: per evaluated length (a string), {"loss", "accuracy", "masked_tokens", "sources": {...}}."""


Record = TrainWindow | Evaluation
KINDS: dict[str, type] = {"train": TrainWindow, "eval": Evaluation}


def from_dict(d: dict) -> Record:
    if d.get("kind") not in KINDS:
        raise ValueError(f"unknown record kind {d.get('kind')!r}: {json.dumps(d)[:200]}")
    return KINDS[d["kind"]].from_dict(d)


def as_records(items) -> list[Record]:
    """Records from parsed metrics.jsonl lines (dicts) or records; other kinds are skipped."""
    return [r if isinstance(r, (TrainWindow, Evaluation)) else from_dict(r)
            for r in items if not isinstance(r, dict) or r.get("kind") in KINDS]


def windows(records) -> list[TrainWindow]:
    return [r for r in as_records(records) if isinstance(r, TrainWindow)]


def evaluations(records) -> list[Evaluation]:
    return [r for r in as_records(records) if isinstance(r, Evaluation)]


def epoch_means(train: list[TrainWindow]) -> dict[str, float]:
    """Each epoch's loss from its windows: masked-token-weighted mean of the window losses."""
    sums: dict[str, list[float]] = {}
    for r in train:
        e = sums.setdefault(str(r.epoch), [0.0, 0.0])
        e[0] += r.loss * r.window_masked_tokens
        e[1] += r.window_masked_tokens
    return {k: v[0] / v[1] for k, v in sums.items() if v[1]}


def read_metrics(run_dir: str | Path) -> list[Record]:
    path = Path(run_dir) / METRICS_NAME
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(from_dict(json.loads(line)))
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}:{i}: {e}") from e
    return out


class MetricsLog:
    """RUN/metrics.jsonl, appended one record per line (rank 0 only), with the records so far in memory."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / METRICS_NAME
        self.records: list[Record] = []

    def append(self, record: Record) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record.to_dict()) + "\n")
        self.records.append(record)

    def truncate_after(self, step: int) -> None:
        """Resume: records past the checkpoint's step are about to be recomputed identically; drop them."""
        self.records = [r for r in read_metrics(self.path.parent) if r.step <= step] if self.path.exists() else []
        self.path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in self.records), encoding="utf-8")


def format_spread(stat: dict, signed: bool = False) -> str:
    """A metric over several seeds ({"mean", "std", "min", "max", "n"}) as the probe's table, the report and the
    model card print it: "mean ± std [min, max]", or the value alone for one seed."""
    fmt = "{:+.4f}" if signed else "{:.4f}"
    text = fmt.format(stat["mean"])
    if stat["n"] > 1:
        text += f" ± {stat['std']:.4f} [{fmt.format(stat['min'])}, {fmt.format(stat['max'])}]"
    return text


PROBE_COLUMNS = ("share of train", "arm", "accuracy", "macro-F1")


def probe_rows(task: dict, minus: str = "-") -> list[list[str]]:
    """One task of probe.json as the rows of the probe's console table and of the report (PROBE_COLUMNS): each
    training share's arms and their per-seed gain (format_spread), then the majority class."""
    rows = []
    for share, row in task["summary"].items():
        label = f"{float(share):.0%} ({row['train_examples']:,})"
        for arm in ("pretrained", "scratch"):
            if arm in row:
                failed = row[arm].get("did_not_learn") or {}
                why = sorted({"one class" if v.startswith("predicts one class") else "within noise of the majority class"
                              for v in failed.values()})
                name = f"{arm}: did not learn (seed {', '.join(failed)}: {', '.join(why)})" if failed else arm
                rows.append([label, name, format_spread(row[arm]["accuracy"]), format_spread(row[arm]["macro_f1"])])
        status = row.get("gain_measured", "measured")  # probe.json files before the check: always shown
        if "gain" in row and status.startswith("measured"):
            rows.append([label, f"pretrained {minus} scratch", format_spread(row["gain"]["accuracy"], True),
                         format_spread(row["gain"]["macro_f1"], True)])
        elif "gain" in row:
            rows.append([label, f"pretrained {minus} scratch", status, ""])
    rows.append(["", "majority class", f"{task['majority_accuracy']:.4f}", ""])
    return rows


def format_value(v, digits: int = 4) -> str:
    """A number as the report and the model card print it: thousands separated, "—" for none."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if abs(v) >= 1e3:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}" if abs(v) < 1e-3 else f"{v:.{digits}f}"
    return str(v)


# ---------------------------------------------------------------------------- sums behind the records
@dataclass
class WindowTotals:
    """One logging window's sums over all ranks."""

    loss_sum: float
    correct: float
    masked: float
    tokens: float
    steps: int
    source_sequences: list[float] = field(default_factory=list)
    """Mixtures: sequences per source (all ranks)."""
    source_tokens: list[float] = field(default_factory=list)
    """Mixtures: non-padding tokens per source (all ranks)."""

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.masked, 1.0)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.masked, 1.0)


class WindowAccumulator:
    """Sums of the current logging window. The loss sums stay on the device (no host sync per step);
    masked and real token counts are known on the host from the loader. ``close`` is the loop's one sync."""

    def __init__(self, device, n_sources: int = 0) -> None:
        import torch

        self._device = device
        self._acc = torch.zeros(2, dtype=torch.float64, device=device)  # loss_sum, correct
        self._host = [0, 0]  # masked tokens, real tokens
        self.n_sources = n_sources
        self._sources = [0.0] * (2 * n_sources)  # mixtures: sequences, then tokens, per source (host numbers)
        self.steps = 0

    def add(self, loss_sum, correct, n_masked: int, n_tokens: int, source_counts=None) -> None:
        import torch

        self._acc += torch.stack([loss_sum.detach().double(), correct.detach().double()])
        self._host[0] += n_masked
        self._host[1] += n_tokens
        if source_counts is not None:
            self._sources = [a + float(b) for a, b in zip(self._sources, source_counts)]

    def close(self) -> WindowTotals:
        """Sum the window over ranks, read it, and start a new window."""
        import torch
        import torch.distributed as dist

        host = torch.tensor(self._host + self._sources, dtype=torch.float64, device=self._device)
        total = torch.cat([self._acc, host])
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(total)
        loss_sum, correct, masked, tokens, *src = total.tolist()
        n = self.n_sources
        out = WindowTotals(loss_sum, correct, masked, tokens, self.steps, src[:n], src[n:])
        self._acc.zero_()
        self._host = [0, 0]
        self._sources = [0.0] * (2 * n)
        self.steps = 0
        return out


@dataclass
class EpochTotals:
    """An epoch's sums so far (all ranks): its mean loss is loss_sum / masked."""

    loss_sum: float = 0.0
    masked: float = 0.0
    tokens: float = 0.0
    steps: int = 0

    def add(self, w: WindowTotals) -> None:
        self.loss_sum += w.loss_sum
        self.masked += w.masked
        self.tokens += w.tokens
        self.steps += w.steps

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.masked, 1.0)


# ---------------------------------------------------------------------------- the summary
@dataclass
class RunSummary:
    """RUN/summary.json: the finished run's headline numbers, each defined in ``definitions``."""

    steps: int | None = None
    epochs_completed: float | None = None
    sequences: int | None = None
    tokens: int | None = None
    global_batch: int | None = None
    seq_len: int | None = None
    world_size: int | None = None
    precision: str | None = None
    zero_stage: int | None = None
    lr: float | None = None
    initial_loss: float | None = None
    final_window_loss: float | None = None
    final_window_steps: int | None = None
    epoch_mean_loss: dict[str, float] | None = None
    skipped_steps: int | None = None
    dropped_sequences_per_epoch: int | None = None
    eval: dict | None = None
    eval_initial: dict | None = None
    train_time_s: float | None = None
    elapsed_s: float | None = None
    time_budget_s: float | None = None
    tokens_per_s: float | None = None
    warm_start: Any = None
    data: dict | None = None
    definitions: dict = field(default_factory=lambda: SUMMARY_DEFINITIONS)
    warnings: list[str] | None = None
    sources: dict | None = None
    """Mixtures: per source name, what the run trained on: {"sequences", "tokens", "epochs"} (passes over it)."""
    phases: list | None = None
    """Phases: one {"max_seq_length", "steps", "sequences", "tokens"} per phase, in order."""
    continued_from: dict | None = None
    """--continue_from: the checkpoint whose weights and optimizer state this run started from."""
    stopped_by: str | None = None
    """Why a run ended before its planned steps when data ran out ('stop' sources)."""
    peak_device_memory_gib: float | None = None
    """On a GPU: this rank's peak allocated memory over the run (torch.cuda.max_memory_allocated), GiB; None on a CPU."""

    def to_dict(self) -> dict:
        return {"version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> RunSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def last_eval(self) -> Evaluation | None:
        return None if self.eval is None else Evaluation.from_dict(self.eval)

    @classmethod
    def from_state(cls, state, config: dict, **more) -> RunSummary:
        """The numbers of a run at a point (state.TrainState) under its effective config (effective_config.json,
        also in each checkpoint): the finished run's summary, or what a checkpoint had done when it saved.
        ``more`` adds what only the end of a run knows (elapsed time, data counts, warm start)."""
        from roberta_ds.training.ds_config import peak_lr, zero_stage

        ds, data = config.get("deepspeed", {}), config.get("data", {})
        per_epoch = data.get("steps_per_epoch")
        return cls(**{**dict(
            steps=state.step, epochs_completed=state.step / per_epoch if per_epoch else None,
            sequences=state.sequences_seen, tokens=state.tokens_seen, global_batch=config.get("global_batch"),
            seq_len=data.get("seq_len"), world_size=config.get("world_size"), precision=config.get("precision"),
            zero_stage=zero_stage(ds), lr=peak_lr(ds), initial_loss=state.initial_loss,
            final_window_loss=state.last_window_loss, final_window_steps=state.last_window_steps,
            epoch_mean_loss=state.epoch_mean_loss(), skipped_steps=state.skipped_steps,
            dropped_sequences_per_epoch=data.get("dropped_sequences_per_epoch"),
            eval=state.last_eval.to_dict() if state.last_eval else None,
            eval_initial=state.evals[0].to_dict() if state.evals else None,
            train_time_s=state.train_time_s, elapsed_s=state.clock.elapsed_s,
            time_budget_s=config.get("time_budget_s"),
            tokens_per_s=state.tokens_seen / max(state.train_time_s, 1e-9)), **more})

    def write(self, run_dir: Path) -> None:
        (Path(run_dir) / SUMMARY_NAME).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False, default=str),
                                                  encoding="utf-8")


def read_summary(run_dir: str | Path) -> RunSummary | None:
    """The run's summary, or None while the run is unfinished."""
    path = Path(run_dir) / SUMMARY_NAME
    return RunSummary.from_dict(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else None
