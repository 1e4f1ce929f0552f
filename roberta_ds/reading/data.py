"""The pretraining data pipeline: shards -> deterministic global order -> this rank's micro-batches.

Elastic determinism. Global batch ``i`` of epoch ``e`` is positions ``[i*G, (i+1)*G)`` of one
canonical order that depends only on (seed, epoch, the manifest): the split's samples permuted over
all shards, then the pieces of each window of samples permuted (ShardStream). Each rank takes a fixed
slice of every global batch, so 1 process x micro 16 and 2 processes x micro 8 train on exactly the
same sequences per step (MosaicML streaming promises the same; the stock WebDataset node split, which
hands whole shards to nodes, does not).

Reading stays flat per rank. The order is arithmetic on the manifest's counts, so each rank (and each
loader worker) reads only the sequences at its own positions (shard_reader.py: one seek and one read
per sequence), never the other ranks' share, and a resume starts at its step without reading the epoch
up to it. The trade-off against reading whole shards in sequence (what a plain WebDataset pipeline
does): reads are one sequence long (1 KiB of ids at 512 tokens), so a filesystem with a high cost per
read wants loader workers (--num_workers) to overlap them, or node-local copies of the shards.

Every rank yields the same number of steps per epoch: the epoch is cut to whole global
batches (the remainder is counted in ``dropped_per_epoch`` and reported), so uneven
shards can never leave one rank waiting in a collective.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from roberta_ds.reading import SHUFFLE_BUFFER
from roberta_ds.reading.masking import IGNORE_INDEX, Masker, sample_rng
from roberta_ds.shard_format import Manifest
from roberta_ds.reading.shard_reader import ShardReader

MODEL_INPUTS = ("input_ids", "masked_positions", "masked_labels", "attention_mask")
"""The batch keys SparseMaskedLM.forward takes; the other keys are bookkeeping."""

Piece = tuple[str, np.ndarray, "np.ndarray | None"]
"""(sample key, token ids [seq_len], word-start flags [seq_len] or None)."""




@dataclass(frozen=True)
class Layout:
    """How a global batch is cut into this rank's micro-batches."""

    micro_batch: int
    grad_accum: int
    world_size: int
    rank: int

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.grad_accum * self.world_size

    def rank_slices(self) -> list[slice]:
        """Positions inside a global batch that this rank computes, one slice per accumulation micro-step."""
        m, w = self.micro_batch, self.world_size
        return [slice(j * w * m + self.rank * m, j * w * m + (self.rank + 1) * m) for j in range(self.grad_accum)]


class ShardStream:
    """The canonical, deterministic order of one split's sequences (pieces), computed from the manifest alone.

    Epoch ``e``: the split's samples (groups of ~32 Ki tokens) in a seeded permutation over all shards, cut into
    windows of ``window_samples`` samples; inside a window, its pieces in a seeded permutation. Position ``p``
    of the epoch maps to (shard, sample, sequence, piece) by arithmetic, so a rank reads only the sequences at
    its own positions (``pieces``), and a resumed run starts at its step without reading what came before.
    Without ``shuffle`` (evaluation) the order is the shards' own.
    """

    def __init__(
        self,
        root: Path,
        manifest: Manifest,
        split: str,
        seq_len: int,
        seed: int,
        shuffle: bool,
        shuffle_buffer: int = SHUFFLE_BUFFER,
    ) -> None:
        packed = manifest.max_seq_length
        if seq_len > packed:
            raise ValueError(
                f"--max_seq_length {seq_len} exceeds the shards' packed length {packed}: "
                f"re-pack with `python -m data_tools pack --max_seq_length {seq_len}` or train at <= {packed}."
            )
        self.root = Path(root)
        self.manifest = manifest
        self.split = split
        self.reader = ShardReader(self.root, manifest, split)
        self.names = [s.name for s in manifest.splits[split].shards]
        self.seq_len = seq_len
        self.packed_len = packed
        self.pieces_per_sequence = math.ceil(packed / seq_len)
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.pad_id = manifest.tokenizer.pad_id
        # One entry per sample (unit of the shuffle), in shard order; arrays, not a Python loop (millions of samples).
        shard_of, sample_of, pieces = [], [], []
        pps = self.pieces_per_sequence
        for i, info in enumerate(manifest.splits[split].shards):
            if not info.samples:
                continue
            rows = np.full(info.samples, self.reader.spp, dtype=np.int64)
            rows[-1] = self.reader.sample_rows(i, info.samples - 1)
            n = rows * pps
            if info.padding_tokens:
                # Only a shard's last sequence holds padding: its all-padding pieces are not in the stream.
                n[-1] -= pps - math.ceil((packed - info.padding_tokens) / seq_len)
            shard_of.append(np.full(info.samples, i, dtype=np.int64))
            sample_of.append(np.arange(info.samples, dtype=np.int64))
            pieces.append(n)
        none = [np.zeros(0, np.int64)]
        self.unit_shard = np.concatenate(shard_of or none)
        self.unit_sample = np.concatenate(sample_of or none)
        self.unit_pieces = np.concatenate(pieces or none)
        self.window_samples = max(1, math.ceil(shuffle_buffer / max(1, manifest.sequences_per_sample * pps)))
        """Samples whose pieces are shuffled together (--shuffle_buffer sequences, rounded up to whole samples)."""
        self._order_cache: tuple[int, dict] | None = None
        self.read_cpu_s = 0.0
        """CPU seconds this process spent locating and reading pieces (the read-volume benchmark reports it)."""
        self._window_cache: tuple[tuple[int, int], tuple[np.ndarray, np.ndarray, int]] | None = None

    def shuffle_coverage(self) -> str | None:
        """A warning when the shuffle cannot mix the split well, else None.

        Samples are permuted over the whole split, but a sample's ~32 Ki tokens are consecutive text of the
        corpus (THUCNews: one category); a window of few samples gives batches of few stretches of text.
        """
        n_units = len(self.unit_pieces)
        if not self.shuffle or self.window_samples >= min(n_units, 16):
            return None
        return (
            f"the shuffle window ({self.shuffle_buffer:,} sequences) holds {self.window_samples} sample(s) of "
            f"{self.manifest.sequences_per_sample} sequences: each batch comes from at most {self.window_samples} "
            "stretch(es) of consecutive corpus text; raise --shuffle_buffer"
        )

    def __len__(self) -> int:
        """Number of pieces (sequences at the training length) in one pass; all-padding pieces are skipped."""
        return int(self.unit_pieces.sum())

    # ------------------------------------------------------------------ the order
    def _order(self, epoch: int) -> dict:
        if self._order_cache is not None and self._order_cache[0] == epoch:
            return self._order_cache[1]
        n = len(self.unit_pieces)
        perm = (np.random.default_rng([self.seed, epoch, 0]).permutation(n) if self.shuffle
                else np.arange(n, dtype=np.int64))
        counts = self.unit_pieces[perm]
        starts = np.arange(0, n, self.window_samples)
        window_sizes = np.add.reduceat(counts, starts) if n else np.zeros(0, np.int64)
        order = {"perm": perm, "counts": counts, "window_offsets": np.concatenate([[0], np.cumsum(window_sizes)])}
        self._order_cache = (epoch, order)
        return order

    def _window(self, epoch: int, w: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Window ``w`` of the epoch: (permutation of its pieces, cumulative pieces of its samples, first sample)."""
        if self._window_cache is not None and self._window_cache[0] == (epoch, w):
            return self._window_cache[1]
        o = self._order(epoch)
        lo = w * self.window_samples
        cum = np.cumsum(o["counts"][lo : lo + self.window_samples])
        size = int(cum[-1])
        perm = (np.random.default_rng([self.seed, epoch, 1, w]).permutation(size) if self.shuffle
                else np.arange(size, dtype=np.int64))
        self._window_cache = ((epoch, w), (perm, cum, lo))
        return perm, cum, lo

    def locate(self, epoch: int, positions) -> np.ndarray:
        """[n, 4] (shard, sample, sequence in sample, piece in sequence) at each position of the epoch's order."""
        o = self._order(epoch)
        positions = np.asarray(positions, dtype=np.int64)
        windows = np.searchsorted(o["window_offsets"], positions, side="right") - 1
        out = np.empty((len(positions), 4), dtype=np.int64)
        for w in np.unique(windows):
            sel = windows == w
            perm, cum, lo = self._window(epoch, int(w))
            j = perm[positions[sel] - o["window_offsets"][w]]  # piece index inside the window
            u = np.searchsorted(cum, j, side="right")  # which of the window's samples
            idx = j - np.where(u > 0, cum[np.maximum(u - 1, 0)], 0)
            unit = o["perm"][lo + u]
            out[sel, 0], out[sel, 1] = self.unit_shard[unit], self.unit_sample[unit]
            out[sel, 2], out[sel, 3] = np.divmod(idx, self.pieces_per_sequence)
        return out

    # ------------------------------------------------------------------ reading
    def pieces(self, epoch: int, positions) -> list[Piece]:
        """The pieces at these positions of the epoch's order, reading only their sequences."""
        L, out, t0 = self.seq_len, [], time.process_time()
        for shard, sample, row, p in self.locate(epoch, positions).tolist():
            piece, wsp = self.reader.read(shard, sample, row, p * L, L)
            piece = piece.copy()  # writable, and not tied to the read buffer
            if piece[0] == self.pad_id:
                raise self.reader.damaged(shard, self.reader.key(shard, sample),
                                          f"piece {p} of sequence {row} is all padding, against the manifest's "
                                          "padding count")
            if piece.shape[0] < L:  # last piece when seq_len does not divide the packed length
                fill = L - piece.shape[0]
                piece = np.concatenate([piece, np.full(fill, self.pad_id, piece.dtype)])
                if wsp is not None:
                    wsp = np.concatenate([wsp, np.ones(fill, bool)])
            out.append((f"{self.names[shard]}/{self.reader.key(shard, sample)}/{row}/{p}", piece, wsp))
        self.read_cpu_s += time.process_time() - t0
        return out

    def epoch(self, epoch: int, chunk: int = 4096) -> Iterator[Piece]:
        """Every piece of the epoch, in order (evaluation reads the first ones; tests read them all)."""
        total = len(self)
        for start in range(0, total, chunk):
            yield from self.pieces(epoch, np.arange(start, min(total, start + chunk)))


def collate(pieces: list[Piece], masker: Masker, mask_seed: int, epoch: int, pad_id: int) -> dict:
    """Mask and stack pieces into one micro-batch.

    Masked positions are flat indices into [batch * seq_len] so the model gathers them
    without boolean indexing (which would force a host sync on GPUs).
    """
    if not pieces:
        raise ValueError("empty micro-batch")
    inputs, labels, real = [], [], 0
    for key, ids, ws in pieces:
        x, y = masker(ids, ws, sample_rng(mask_seed, epoch, key))
        inputs.append(x)
        labels.append(y)
        real += int((ids != pad_id).sum())
    input_ids = np.stack(inputs)
    flat = np.stack(labels).reshape(-1)
    pos = np.flatnonzero(flat != IGNORE_INDEX)
    batch = {
        "input_ids": torch.from_numpy(input_ids),
        "masked_positions": torch.from_numpy(pos.astype(np.int64)),
        "masked_labels": torch.from_numpy(flat[pos]),
        "n_tokens": real,
        "n_masked": int(pos.shape[0]),
        # Also as a tensor: it travels to the device with the batch (pinned, non-blocking), so the
        # global masked count can be all-reduced without creating a device tensor from a host int.
        "n_masked_tensor": torch.tensor(float(pos.shape[0]), dtype=torch.float64),
    }
    # SDPA takes its fast path without a mask; only the split's remainder piece needs one.
    pad = input_ids == pad_id
    if pad.any():
        batch["attention_mask"] = torch.from_numpy((~pad).astype(np.int64))
    return batch


class _TrainSteps(IterableDataset):
    """Yields, per global step, this rank's list of accumulation micro-batches. Loader workers take steps round-robin."""

    def __init__(self, data: "PretrainingData", epoch: int, start_step: int) -> None:
        self.data, self.epoch, self.start = data, epoch, start_step

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        d = self.data
        G = d.layout.global_batch
        slices = d.layout.rank_slices()
        for step in range(self.start, d.steps_per_epoch):
            if (step - self.start) % nw != wid:
                continue
            mine = np.concatenate([np.arange(step * G + s.start, step * G + s.stop) for s in slices])
            pieces = d.stream.pieces(self.epoch, mine)
            m = d.layout.micro_batch
            yield [collate(pieces[j * m : (j + 1) * m], d.masker, d.mask_seed, self.epoch, d.stream.pad_id)
                   for j in range(len(slices))]


class PretrainingData:
    """Training batches for one rank, epoch by epoch, resumable at any step."""

    def __init__(
        self, stream: ShardStream, layout: Layout, masker: Masker, mask_seed: int, num_workers: int = 0
    ) -> None:
        self.stream, self.layout, self.masker, self.mask_seed = stream, layout, masker, mask_seed
        self.num_workers = num_workers
        self.steps_per_epoch = len(stream) // layout.global_batch
        self.dropped_per_epoch = len(stream) - self.steps_per_epoch * layout.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the {stream.split} split has {len(stream)} sequences of {stream.seq_len} tokens, fewer than one "
                f"global batch of {layout.global_batch} (micro {layout.micro_batch} x accumulation "
                f"{layout.grad_accum} x {layout.world_size} ranks): pack more data or lower "
                "--ds train_micro_batch_size_per_gpu=N"
            )

    def steps_from(self, start_step: int = 0) -> Iterator[tuple[int, list[dict]]]:
        """Endless ``(epoch, micro_batches)`` from global step ``start_step`` on, epoch after epoch."""
        epoch, start = divmod(start_step, self.steps_per_epoch)
        while True:
            for micro_batches in self.steps(epoch, start):
                yield epoch, micro_batches
            epoch, start = epoch + 1, 0

    def steps(self, epoch: int, start_step: int = 0) -> Iterator[list[dict]]:
        ds = _TrainSteps(self, epoch, start_step)
        if self.num_workers == 0:
            yield from ds
            return
        yield from DataLoader(
            ds,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )


def to_device(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's tensors on ``device``. On CUDA they are pinned first so the copies are
    asynchronous (a pageable host->device copy waits for the stream: a host sync per step)."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            if device.type == "cuda" and not v.is_pinned():
                v = v.pin_memory()
            out[k] = v.to(device, non_blocking=True)
    return out


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def eval_batches(
    stream: ShardStream, layout: Layout, masker: Masker, mask_seed: int, max_sequences: int | None = None
) -> Iterator[dict | None]:
    """The split's first ``max_sequences`` pieces (all by default) once, in order, split across ranks by micro-batch.

    The set evaluated depends only on ``max_sequences``, never on micro batch or world size, so
    held-out numbers compare across runs. Every rank yields the same number of items (None where it
    has no data left), because under ZeRO-3 each forward is a collective and a rank that stopped
    early would hang the others.
    """
    m, w, r = layout.micro_batch, layout.world_size, layout.rank
    total = len(stream) if max_sequences is None else min(len(stream), max_sequences)
    for k in range(math.ceil(total / (m * w))):
        mine = np.arange(k * m * w + r * m, min(k * m * w + (r + 1) * m, total))  # this rank's part of the round
        yield collate(stream.pieces(0, mine), masker, mask_seed, 0, stream.pad_id) if len(mine) else None
