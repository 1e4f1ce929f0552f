"""A run's records: the on-disk format of its numbers, and the one place each metric is defined.

    RUN/metrics.jsonl   one JSON object per line: a TrainWindow ("kind": "train") or an Evaluation ("kind": "eval")
    RUN/summary.json    the RunSummary (summary.py), written once when the run finishes

The trainer writes through this module; the sanity checks, the report and the tests read through it.
Every record carries ``"version"``. Version 1 (files written before this module existed) has no
``"version"`` key and the same fields: it reads the same way. Version 3 added ``grad_norm`` to the
training windows (None when read from an older file); version 4 the mixture and phase fields (``seq_len``,
``phase``, ``sources``, ``lengths``), written only by runs that have them; version 5 the window metrics
(metrics.py: ``grad_norm`` as before, and ``fill``), one key each. Adding a window metric adds a key and no
version: readers take the metrics they know (None when absent) and ignore keys they do not know, so a newer
writer's extra fields do not break an older reader.

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
from typing import ClassVar

from roberta_ds.reading.masking import EVAL_MASK_SEED, EVAL_MASKING
from roberta_ds.training.observe import metrics as window_metrics
from roberta_ds.training.run_files import METRICS_NAME

VERSION = 5

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
    metrics: dict = field(default_factory=dict)
    """The window metrics (metrics.py: WINDOW_METRICS), by name. Flat in the JSON, one key per metric (None where
    the writer did not measure it, or predates the metric)."""
    seq_len: int | None = None
    """The window's sequence length (runs with --phases; a window never spans two phases)."""
    phase: int | None = None
    """0-based phase of the window (runs with --phases)."""
    sources: dict | None = None
    """Mixtures: per source name, the window's {"sequences", "tokens", "share"} (share = its tokens / the window's),
    all ranks."""

    def to_dict(self) -> dict:
        d = super().to_dict()
        metrics = d.pop("metrics")
        return {**d, **{m.name: None for m in window_metrics.WINDOW_METRICS}, **metrics}

    @classmethod
    def from_dict(cls, d: dict) -> TrainWindow:
        rec = super().from_dict({k: v for k, v in d.items() if k != "metrics"})
        rec.metrics = {m.name: d.get(m.name) for m in window_metrics.WINDOW_METRICS}
        return rec


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

