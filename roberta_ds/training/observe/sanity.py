"""Sanity checks on a run's numbers: pure functions returning human-readable warning strings.

Why: the original work reported a "final mean loss 0.1924" that was a bookkeeping artifact
(docs/design.md); nobody noticed because no check compared it with what is plausible for the data
seen. These checks run in the report and, through ``check_records`` / ``check_data`` /
``check_run``, in the trainer's log. Each warning says what was seen and what it may mean.
Warnings are deterministic strings (they name steps and values), so a caller that checks
repeatedly can print only the new ones.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from roberta_ds.training.observe.records import as_records, epoch_means, evaluations, windows
from roberta_ds.training.observe.summary import RunSummary
from roberta_ds.shard_format import Manifest, ShardFormatError, read_manifest

# Lowest training loss (nats per masked token) we believe for a given amount of training data.
# A healthy Chinese BERT-base reaches a held-out MLM loss of roughly 1.3-2.0 nats after billions
# of tokens (docs/design.md); far below that after far less data means broken bookkeeping, a leak or
# memorisation of a tiny corpus repeated many times. (tokens seen upper bound, floor)
LOSS_FLOORS: tuple[tuple[float, float], ...] = ((1e7, 2.5), (1e8, 1.5), (1e9, 1.0), (math.inf, 0.5))

HELDOUT_RATIO = 0.8
"""Held-out loss below this fraction of the training loss at the same point is suspicious..."""
HELDOUT_MARGIN = 0.25
"""...if it is also this many nats below it (tiny differences are dropout and noise)."""
FLAT_MIN_RECORDS = 4
"""Training windows needed before "the loss is flat" can be judged."""
FLAT_REL_DROP = 0.01
"""Relative fall of the training loss from the first to the last window below which it counts as flat."""
PLATEAU_MARGIN = 0.25
"""A final held-out loss less than this many nats below the unigram line means no context was learned
(the collapsed demo of issue 7 ended 0.07 nats from it; a model that learned context is well clear)."""


def loss_floor(tokens_seen: float) -> float:
    for limit, floor in LOSS_FLOORS:
        if tokens_seen < limit:
            return floor
    return LOSS_FLOORS[-1][1]


def check_records(records) -> list[str]:
    """Warnings from metrics.jsonl records so far (records.py; parsed lines or records): NaN/inf, implausibly
    low, flat, held-out gap."""
    warnings: list[str] = []
    train, evals = windows(records), evaluations(records)
    for r in train + evals:
        if not math.isfinite(r.loss):
            warnings.append(f"{r.KIND} loss is {r.loss} at step {r.step}: training diverged "
                            "(lower the learning rate, check fp16 loss scaling, or use bf16/fp32)")
    for r in train:
        floor = loss_floor(r.tokens_seen)
        if math.isfinite(r.loss) and r.loss < floor:
            warnings.append(
                f"training loss {r.loss:.4f} at step {r.step} is implausibly low for {r.tokens_seen:,} "
                f"tokens seen (below {floor} nats): check the loss bookkeeping, a train/validation leak, or a tiny "
                "corpus repeated until memorised"
            )
            break  # one is enough: later windows would repeat it
    finite = [r for r in train if math.isfinite(r.loss)]
    if len(finite) >= FLAT_MIN_RECORDS:
        first, last = finite[0].loss, finite[-1].loss
        if last > first + FLAT_REL_DROP * abs(first):
            warnings.append(
                f"training loss rose: {first:.4f} at step {finite[0].step} -> {last:.4f} at step {finite[-1].step}: "
                "the run is diverging (lower the learning rate, lengthen the warmup, keep gradient clipping on)"
            )
        elif first - last < FLAT_REL_DROP * abs(first):
            warnings.append(
                f"training loss is flat: {first:.4f} at step {finite[0].step} -> {last:.4f} at step "
                f"{finite[-1].step} (less than {FLAT_REL_DROP:.0%} lower): the model is not learning "
                "(learning rate 0 or too low, frozen weights, or labels not matching inputs)"
            )
    for e in evals:
        if e.step == 0 or not math.isfinite(e.loss):
            continue
        # The window ending at the eval step averages a slightly worse model; the next window a
        # slightly better one: compare with the lower of the two so fast early learning is not flagged.
        near = [r.loss for r in finite if r.step == e.step]
        near += [r.loss for r in finite if r.step > e.step][:1]
        if not near:
            continue
        ref = min(near)
        if e.loss < HELDOUT_RATIO * ref and ref - e.loss > HELDOUT_MARGIN:
            warnings.append(
                f"held-out loss {e.loss:.4f} at step {e.step} is far below the training loss {ref:.4f} "
                "around that step: validation text may overlap the training text, or the validation split is "
                "much easier (check the data split)"
            )
    return warnings


def _hashes(root: Path, manifest: Manifest, split: str) -> np.ndarray | None:
    rel = manifest.splits[split].document_hashes
    if not rel or not (root / rel).exists():
        return None
    return np.load(root / rel, allow_pickle=False).astype(np.uint64)


def check_mixture_leaks(sources: list[tuple[str, Path, Manifest]]) -> list[str]:
    """Mixtures: validation documents of one source that are training documents of another (the same article in
    two corpora: THUCNews and a crawl). Each source's own split is check_data's."""
    warnings = []
    for name, root, manifest in sources:
        if "validation" not in manifest.splits or not manifest.splits["validation"].shards:
            continue
        val = _hashes(root, manifest, "validation")
        if val is None:
            continue
        for other, oroot, omanifest in sources:
            train = _hashes(oroot, omanifest, "train") if other != name else None
            n = 0 if train is None else int(np.isin(val, train).sum())
            if n:
                warnings.append(f"{n:,} of {len(val):,} validation documents of source {name!r} are training "
                                f"documents of source {other!r}: its held-out numbers are not held out from the "
                                "mixture (pack the sources from deduplicated inputs)")
    return warnings


def check_data(data_dir: str | Path, manifest: Manifest | None = None) -> list[str]:
    """Validation documents that also occur in the training split (content-hash check against the manifest)."""
    root = Path(data_dir)
    try:
        manifest = manifest or read_manifest(root)
    except ShardFormatError as e:
        return [f"cannot check the data for leaks: {e}"]
    if "validation" not in manifest.splits or not manifest.splits["validation"].shards:
        return []
    train, val = _hashes(root, manifest, "train"), _hashes(root, manifest, "validation")
    if train is None or val is None:
        return [f"cannot check {root} for train/validation overlap: the manifest lists no document hashes "
                "(re-pack with this version of `python -m data_tools pack`)"]
    shared = np.isin(val, train)
    n = int(shared.sum())
    warnings = []
    if n:
        warnings.append(
            f"{n:,} of {len(val):,} validation documents ({n / max(len(val), 1):.1%}) also occur in the training "
            f"split of {root}: held-out metrics are not held out (re-run `python -m data_tools pack` so the split "
            "is made by document)"
        )
    train_shards = {s.sha256 for s in manifest.splits["train"].shards}
    same = [s.name for s in manifest.splits["validation"].shards if s.sha256 in train_shards]
    if same:
        warnings.append(f"validation shards {same} are byte-identical to training shards in {root}")
    return warnings


def check_summary(summary: RunSummary | dict, records) -> list[str]:
    """The summary's headline numbers must agree with the metrics they summarise (the 0.1924 lesson)."""
    if isinstance(summary, dict):
        summary = RunSummary.from_dict(summary)
    warnings = []
    train = [r for r in windows(records) if math.isfinite(r.loss)]
    if not train:
        return warnings
    final = summary.final_window_loss
    if final is not None and math.isfinite(final) and not math.isclose(final, train[-1].loss, rel_tol=1e-6):
        warnings.append(f"summary final_window_loss {final:.4f} differs from the last logged window's loss "
                        f"{train[-1].loss:.4f} (step {train[-1].step}): the bookkeeping is inconsistent")
    from_windows = epoch_means(train)
    for epoch, mean in (summary.epoch_mean_loss or {}).items():
        recomputed = from_windows.get(str(epoch))
        if recomputed is None:
            continue
        if not math.isclose(mean, recomputed, rel_tol=1e-4):
            warnings.append(f"summary mean loss of epoch {epoch} is {mean:.4f} but metrics.jsonl gives "
                            f"{recomputed:.4f} (masked-token-weighted mean of its windows): inconsistent bookkeeping")
    return warnings


def check_final_eval(records) -> list[str]:
    """The run's last held-out evaluation: a collapsed encoder, or a loss at the unigram line (no context learned).

    Only the last one: every masked LM passes through both early on (the first steps learn token
    frequencies, and on that plateau all tokens share one representation); a run must leave them.
    """
    evals = [e for e in evaluations(records) if e.step and math.isfinite(e.loss)]
    if not evals:
        return []
    e, warnings = evals[-1], []
    c = e.collapse
    if c and c.get("collapsed"):
        warnings.append(
            f"the encoder has collapsed (step {e.step}): the final hidden states of different tokens have a mean "
            f"cosine of {c['token_cosine']:.7f} ([CLS] varies by {c['cls_relative_spread']:.1e} of its norm across "
            "inputs): every input gets nearly the same representation, useless for fine-tuning however the loss "
            "looks. Train longer, or lower the learning rate / lengthen the warmup (README: the short-run recipe)"
        )
    if e.unigram_nats is None:
        return warnings
    gap = e.unigram_nats - e.loss
    if gap >= PLATEAU_MARGIN:
        return warnings
    return warnings + [
        f"held-out loss {e.loss:.4f} at step {e.step} is "
        + (f"only {gap:.3f} nats below" if gap >= 0 else f"{-gap:.3f} nats above")
        + f" the unigram line {e.unigram_nats:.4f} (needs to be {PLATEAU_MARGIN} below): the encoder learned at "
        "most which tokens are frequent, little or no context. Train longer, or check the learning rate and warmup "
        "(README: the short-run recipe)"
    ]


def check_run(records, summary: RunSummary | dict | None, data_dir: str | Path | None) -> list[str]:
    """All checks: metrics records, the summary against them, the unigram line, and the data's train/validation overlap."""
    records = as_records(records)
    warnings = check_records(records) + check_final_eval(records)
    if summary is not None:
        warnings += check_summary(summary, records)
    if data_dir is not None:
        if Path(data_dir).is_dir():
            warnings += check_data(data_dir)
        else:
            warnings.append(f"cannot check the data for leaks: {data_dir} no longer exists")
    return warnings
