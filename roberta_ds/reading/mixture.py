"""Several corpora mixed by weight, and sequence-length phases: the order of a run's training sequences when it reads
more than one shard directory (``--mixture``) or changes its length on the way (``--phases 128:0.9,512:0.1``).

The mixture. Each phase's global positions (position ``p`` = step-in-phase x global batch + slot) are cut into
blocks of MIX_BLOCK positions. Every block holds the same number of positions of each source (the weights,
normalised, times MIX_BLOCK, by largest remainder: shares exact to 1/MIX_BLOCK), in a seeded permutation of its
own. The ``i``-th position of source ``s`` reads index ``offset + i`` of that source's canonical stream
(data.ShardStream: its own seeded epochs), which wraps into the source's next epoch when it runs out (``repeat``)
or ends the run there (``stop``). So the order is arithmetic on (seed, weights, the manifests' counts, the phases'
start steps): the same at any world size, each rank reads only the sequences at its own positions, and a resumed
run starts at its step without replaying anything (what Megatron-LM's blended datasets and MosaicML Streaming's
streams promise; their samplers index a precomputed table, ours a block's permutation).

The phases. The shards are packed once at the longest length; a phase at a shorter length reads the same blocks
cut into pieces (``--max_seq_length`` does the same for a whole run), so nothing is truncated. Each source's
position carries over a phase boundary as the share of its epoch already read. A phase starts at a share of
``--max_steps`` (known up front) or of ``--time_budget`` (decided at a clock agreement point, every rank at the
same step, and kept in the checkpoint).

Why not DeepSpeed's ``curriculum_learning`` (``seqlen``, ``fixed_discrete``): DeepSpeed 0.19 refuses the legacy
top-level section ("Legacy top-level 'curriculum_learning' has been removed"), whose seqlen type handed the model a
``curriculum_seqlen`` to truncate every batch to; what remains, ``data_efficiency.data_sampling.curriculum_learning``,
chooses *which samples* DeepSpeed's own sampler draws (by a difficulty metric precomputed into index files, through
``deepspeed_io``), and a length curriculum there still truncates in the model (Megatron-DeepSpeed's seqlen_truncate):
a 128-token phase would never train on tokens 129-512 of a block, and the sampler would replace this rank-sliced
order (elastic resume, the mixture). A shorter phase here reads every token, as its own pieces (docs/design.md,
"Mixtures and phases").
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from roberta_ds.reading.data import Layout, ShardStream, collate
from roberta_ds.reading.masking import Masker
from roberta_ds.reading.mixture_config import PhaseSpec, Source, load_mixture, parse_phases  # noqa: F401 (re-exported)

MIX_BLOCK = 10_000
"""Positions per mixture block; each block holds every source's exact count (shares exact to 1e-4)."""
def block_counts(weights: list[float], block: int = MIX_BLOCK) -> np.ndarray:
    """Positions per block for each source: weights normalised to ``block``, by largest remainder (ties to the
    earlier source). Every source keeps at least one."""
    w = np.asarray(weights, dtype=np.float64)
    exact = w / w.sum() * block
    counts = np.floor(exact).astype(np.int64)
    order = sorted(range(len(w)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: block - int(counts.sum())]:
        counts[i] += 1
    if (counts == 0).any():
        raise ValueError(f"a weight below 1/{block} of the total gives its source no sequences: raise it")
    return counts


def source_seed(seed: int, name: str) -> int:
    """Each source's own data-order seed, from the run's seed and the source's name (not its place in the file)."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode("utf-8"))]).generate_state(1)[0])


class Mixture:
    """Which source each position of a phase takes, and that source's running index (the block arrangement)."""

    def __init__(self, weights: list[float], seed: int, block: int = MIX_BLOCK) -> None:
        self.counts = block_counts(weights, block)
        self.block, self.seed = block, seed
        self._base = np.repeat(np.arange(len(weights)), self.counts)
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, list[np.ndarray]]] = {}

    def _arrangement(self, phase: int, b: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Block ``b`` of ``phase``: (label per slot, its rank among its source's slots, each source's slots)."""
        key = (phase, b)
        if key not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            labels = self._base[np.random.default_rng([self.seed, 0x6D6978, phase, b]).permutation(self.block)]
            slots = [np.flatnonzero(labels == s) for s in range(len(self.counts))]
            rank = np.empty(self.block, np.int64)
            for where in slots:
                rank[where] = np.arange(len(where))
            self._cache[key] = (labels, rank, slots)
        return self._cache[key]

    def assign(self, phase: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source, the source's 0-based running index within the phase) at each position."""
        positions = np.asarray(positions, dtype=np.int64)
        src, idx = np.empty_like(positions), np.empty_like(positions)
        blocks = positions // self.block
        for b in np.unique(blocks):
            sel = blocks == b
            labels, rank, _ = self._arrangement(phase, int(b))
            r = positions[sel] - b * self.block
            src[sel] = labels[r]
            idx[sel] = b * self.counts[labels[r]] + rank[r]
        return src, idx

    def count_before(self, phase: int, n: int) -> np.ndarray:
        """Positions of each source among the phase's first ``n``."""
        b, r = divmod(n, self.block)
        out = b * self.counts
        if r:
            labels = self._arrangement(phase, b)[0]
            out = out + np.bincount(labels[:r], minlength=len(self.counts))
        return out

    def position_of(self, phase: int, source: int, i: int) -> int:
        """The position at which ``source`` reads its ``i``-th (0-based) index of the phase."""
        b, r = divmod(i, int(self.counts[source]))
        return b * self.block + int(self._arrangement(phase, b)[2][source][r])


@dataclass(frozen=True)
class Phase:
    seq_len: int
    share: float
    start: int | None
    """The phase's first step (None: not decided yet, a time budget's later phase)."""


class MixedData:
    """Training batches for one rank from several sources and/or several phases, resumable at any step.

    The interface of data.PretrainingData (``steps_from``, ``steps_per_epoch``) plus the phases: ``steps_from`` ends
    at the end of the phase it starts in, and the trainer starts it again for the next one."""

    def __init__(self, sources: list[Source], manifests: list, phases: list[PhaseSpec], layout: Layout,
                 masker: Masker, seed: int, shuffle_buffer: int, num_workers: int = 0) -> None:
        self.sources, self.specs, self.layout, self.masker = sources, phases, layout, masker
        self.seed, self.num_workers = seed, num_workers
        self.names = [s.name for s in sources]
        self.streams = [[ShardStream(Path(s.dir), m, "train", p.seq_len, source_seed(seed, s.name), True,
                                     shuffle_buffer) for s, m in zip(sources, manifests)] for p in phases]
        self.lengths = np.array([[len(st) for st in row] for row in self.streams], dtype=np.int64)  # [phase, source]
        empty = [s.name for s, n in zip(sources, self.lengths[0]) if n == 0]
        if empty:
            raise ValueError(f"source(s) {empty} have no training sequences: pack more data or leave them out")
        self.mixture = Mixture([s.weight for s in sources], seed)
        self.pad_id = manifests[0].tokenizer.pad_id
        self.starts: list[int | None] = [0] + [None] * (len(phases) - 1)
        G = layout.global_batch
        self.steps_per_epoch = max(1, int(self.lengths[0].sum()) // G)
        """Steps of one pass over every source together at the first phase's length (a nominal epoch)."""
        self.dropped_per_epoch = 0
        self.time_shares = False
        """Phases start at shares of a time budget (decided by the clock) rather than of the step count."""

    # ------------------------------------------------------------------ the plan
    @property
    def phases(self) -> list[Phase]:
        return [Phase(p.seq_len, p.share, s) for p, s in zip(self.specs, self.starts)]

    def plan_steps(self, total: int) -> None:
        """Phase starts at their shares of ``total`` steps (a step-count run). Every phase gets a step."""
        cum = np.cumsum([0.0] + [p.share for p in self.specs[:-1]])
        self.starts = [int(round(c * total)) for c in cum]
        self._offsets_cache = None
        short = [f"{p.seq_len}:{p.share:g}" for p, a, b in zip(self.specs, self.starts, self.starts[1:] + [total])
                 if b <= a]
        if short:
            raise ValueError(f"--phases: phase(s) {short} get no step of {total}: raise --max_steps or their share")

    def set_starts(self, starts: list[int | None]) -> None:
        """The phase starts a checkpoint recorded (a time-share run's decided boundaries)."""
        self.starts = list(starts)
        self._offsets_cache = None

    def steps_for_epochs(self, epochs: float) -> int:
        """Steps in which the run reads ``epochs`` passes over the mixture's sequences, phases' shares included."""
        per_step = sum(p.share * self.layout.global_batch / int(n.sum()) for p, n in zip(self.specs, self.lengths))
        return max(1, round(epochs / per_step))

    def phase_at(self, step: int) -> int:
        return max(k for k, s in enumerate(self.starts) if s is not None and s <= step)

    def phase_end(self, k: int) -> int | None:
        return self.starts[k + 1] if k + 1 < len(self.starts) else None

    def boundary(self, step: int) -> bool:
        """A phase starts at ``step`` (the steps before it close their logging window)."""
        return step > 0 and step in self.starts

    def decide(self, step: int, elapsed_s: float, budget_s: float) -> bool:
        """A time-share run: start the next phase after ``step`` once the agreed clock passed its share of the
        budget. True when it did (the caller restarts the data at ``step``)."""
        k = self.phase_at(step)
        if not self.time_shares or k + 1 >= len(self.specs) or self.starts[k + 1] is not None:
            return False
        if elapsed_s < sum(p.share for p in self.specs[: k + 1]) * budget_s:
            return False
        self.starts[k + 1] = step
        self._offsets_cache = None
        return True

    _offsets_cache: list[np.ndarray] | None = None

    def offsets(self) -> list[np.ndarray]:
        """Each decided phase's starting index into each source's stream (in that phase's pieces)."""
        if self._offsets_cache is not None and len(self._offsets_cache) == sum(s is not None for s in self.starts):
            return self._offsets_cache
        G, out = self.layout.global_batch, [np.zeros(len(self.sources), np.int64)]
        for k in range(1, len(self.starts)):
            if self.starts[k] is None:
                break
            read = out[-1] + self.mixture.count_before(k - 1, (self.starts[k] - self.starts[k - 1]) * G)
            # carried over as the share of each source's passes already read, in the next phase's pieces
            out.append(-(-read * self.lengths[k] // self.lengths[k - 1]))
        self._offsets_cache = out
        return out

    def limit(self) -> tuple[int, str] | None:
        """(steps, source name) where the first 'stop' source runs out: the run ends before the step that would read
        past its limit. None when every source repeats (or none runs out within the decided phases)."""
        G, best = self.layout.global_batch, None
        offsets = self.offsets()
        for k, start in enumerate(self.starts[: len(offsets)]):
            end = self.phase_end(k)
            for s, src in enumerate(self.sources):
                if src.epoch_limit is None:
                    continue
                allowed = int(math.floor(src.epoch_limit * self.lengths[k][s]))
                if offsets[k][s] >= allowed:
                    step = start
                else:
                    step = start + self.mixture.position_of(k, s, allowed - int(offsets[k][s])) // G
                if (end is None or step < end) and (best is None or step < best[0]):
                    best = (step, src.name)
            if best is not None:
                return best
        return best

    def epochs_done(self, step: int) -> float:
        """Passes over the mixture's sequences (all sources together) read by ``step``, each phase in its own pieces."""
        G, done = self.layout.global_batch, 0.0
        for k, start in enumerate(self.starts):
            if start is None or start >= step:
                break
            end = min(step, self.phase_end(k) or step)
            done += (end - start) * G / int(self.lengths[k].sum())
        return done

    def epoch_at(self, step: int) -> int:
        """The (0-based) mixture epoch ``step`` ends in: whole passes completed before it."""
        return int(math.floor(self.epochs_done(step) + 1e-9))

    def source_epochs(self, sequences: list[list[int]]) -> list[float]:
        """Passes over each source, from the sequences read per phase ([phase][source])."""
        return [sum(sequences[k][s] / int(self.lengths[k][s]) for k in range(len(sequences)))
                for s in range(len(self.sources))]

    # ------------------------------------------------------------------ reading
    def rank_pieces(self, step: int) -> tuple[list, np.ndarray]:
        """This rank's pieces of global step ``step`` (all its micro-batches, in order) and their sources."""
        k = self.phase_at(step)
        G = self.layout.global_batch
        start = (step - self.starts[k]) * G
        mine = np.concatenate([np.arange(start + s.start, start + s.stop) for s in self.layout.rank_slices()])
        src, idx = self.mixture.assign(k, mine)
        j = self.offsets()[k][src] + idx
        pieces: list = [None] * len(mine)
        for s in np.unique(src):
            sel = np.flatnonzero(src == s)
            n = self.lengths[k][s]
            epochs, pos = np.divmod(j[sel], n)
            for e in np.unique(epochs):
                at = sel[epochs == e]
                got = self.streams[k][s].pieces(int(e), pos[epochs == e])
                for i, (key, ids, ws) in zip(at, got):
                    # the masking seed's key names the source, the length and the pass (keys repeat across them)
                    pieces[i] = (f"{self.names[s]}/{self.specs[k].seq_len}/{int(e)}/{key}", ids, ws)
        return pieces, src

    def steps_from(self, start_step: int = 0) -> Iterator[tuple[int, list[dict]]]:
        """``(epoch, micro_batches)`` from ``start_step`` to the end of its phase (endless in the last phase)."""
        end = self.phase_end(self.phase_at(start_step))
        ds = _MixedSteps(self, start_step, end)
        it = ds if self.num_workers == 0 else DataLoader(ds, batch_size=None, num_workers=self.num_workers,
                                                         pin_memory=torch.cuda.is_available(),
                                                         persistent_workers=False)
        for step, micro_batches in it:
            yield self.epoch_at(step), micro_batches


class _MixedSteps(IterableDataset):
    """Per global step from ``start`` to ``end``: (step, this rank's micro-batches, each with its sources' counts).
    Loader workers take steps round-robin."""

    def __init__(self, data: MixedData, start: int, end: int | None) -> None:
        self.data, self.start, self.end = data, start, end

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        d, m = self.data, self.data.layout.micro_batch
        n_src = len(d.sources)
        step = self.start
        while self.end is None or step < self.end:
            if (step - self.start) % nw == wid:
                pieces, src = d.rank_pieces(step)
                out = []
                for j in range(d.layout.grad_accum):
                    mb = collate(pieces[j * m:(j + 1) * m], d.masker, d.seed, 0, d.pad_id)
                    real = np.array([int((ids != d.pad_id).sum()) for _, ids, _ in pieces[j * m:(j + 1) * m]])
                    s = src[j * m:(j + 1) * m]
                    mb["source_counts"] = np.concatenate([np.bincount(s, minlength=n_src),
                                                          np.bincount(s, weights=real, minlength=n_src)])
                    out.append(mb)
                yield step, out
            step += 1
