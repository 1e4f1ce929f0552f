"""The pretraining data pipeline: shards -> deterministic global order -> this rank's micro-batches.

Elastic determinism. Global batch ``i`` of epoch ``e`` is positions ``[i*G, (i+1)*G)`` of one
canonical stream that depends only on (seed, epoch, the shards): shard order permuted per
epoch, then a seeded buffer shuffle. Each rank takes a fixed slice of every global batch, so
1 process x micro 16 and 2 processes x micro 8 train on exactly the same sequences per step
(MosaicML streaming promises the same; the stock WebDataset node split, which hands whole
shards to nodes, does not). The price: every rank and loader worker *reads* the whole stream
(and keeps its slice). Reading packed uint16 is ~2 bytes/token, orders of magnitude below
what a GPU consumes, and ranks on one node share the page cache.

Every rank yields the same number of steps per epoch: the epoch is cut to whole global
batches (the remainder is counted in ``dropped_per_epoch`` and reported), so uneven
shards can never leave one rank waiting in a collective.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import islice
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from roberta_ds.masking import IGNORE_INDEX, Masker, sample_rng
from roberta_ds.shard_format import Manifest, ShardFormatError, decode_sample

MODEL_INPUTS = ("input_ids", "masked_positions", "masked_labels", "attention_mask")
"""The batch keys SparseMaskedLM.forward takes; the other keys are bookkeeping."""

Piece = tuple[str, np.ndarray, "np.ndarray | None"]
"""(sample key, token ids [seq_len], word-start flags [seq_len] or None)."""


def every_rank_reads_all(src):
    """Explicit WebDataset node splitter: no split by node; ranks split global batches instead (module docstring)."""
    yield from src


def every_worker_reads_all(src):
    """Explicit WebDataset worker splitter: no split by worker; workers split global batches round-robin."""
    yield from src


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
    """The canonical, deterministic stream of sequences (pieces) of one split."""

    def __init__(
        self,
        root: Path,
        manifest: Manifest,
        split: str,
        seq_len: int,
        seed: int,
        shuffle: bool,
        shuffle_buffer: int = 100_000,
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
        self.paths = manifest.shard_paths(self.root, split)
        self.names = [s.name for s in manifest.splits[split].shards]
        self.seq_len = seq_len
        self.packed_len = packed
        self.pieces_per_sequence = math.ceil(packed / seq_len)
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.pad_id = manifest.tokenizer.pad_id

    def shuffle_coverage(self) -> str | None:
        """A warning when the shuffle cannot mix the split well, else None.

        Shards keep the corpus order (THUCNews: category by category), so the training order is
        only as random as the shard permutation plus the buffer allow.
        """
        n, shards = len(self), len(self.paths)
        if not self.shuffle or self.shuffle_buffer >= n or shards >= 16:
            return None
        return (
            f"the shuffle buffer ({self.shuffle_buffer:,} sequences) holds {self.shuffle_buffer / n:.0%} of the "
            f"{n:,} training sequences and there are only {shards} shard(s): batches will follow the corpus order "
            "(e.g. one category at a time); raise --shuffle_buffer, or pack with a smaller --shard_size_mb"
        )

    def __len__(self) -> int:
        """Number of pieces (sequences at the training length) in one pass; all-padding pieces are skipped."""
        info = self.manifest.splits[self.split]
        n_seq, pad = info.sequences, info.padding_tokens
        if pad == 0:
            return n_seq * self.pieces_per_sequence
        # Only the split's last sequence holds padding (shard_format docstring).
        return (n_seq - 1) * self.pieces_per_sequence + math.ceil((self.packed_len - pad) / self.seq_len)

    def _pieces(self, order: list[int]) -> Iterator[Piece]:
        url_to_name = {str(self.paths[i]): self.names[i] for i in order}
        src = wds.WebDataset(
            [str(self.paths[i]) for i in order],
            shardshuffle=False,
            nodesplitter=every_rank_reads_all,
            workersplitter=every_worker_reads_all,
            empty_check=False,
        )
        L, n = self.seq_len, self.pieces_per_sequence
        for sample in self._checked(src, url_to_name, order):
            ids, ws = sample["ids"], sample["ws"]
            base = f"{url_to_name[sample['__url__']]}/{sample['__key__']}"
            for row in range(ids.shape[0]):
                for p in range(n):
                    # Copies, not views: a view would keep its whole sample group alive in the shuffle buffer.
                    piece = ids[row, p * L : (p + 1) * L].copy()
                    if piece[0] == self.pad_id:
                        continue  # all padding (the split's final remainder)
                    wsp = None if ws is None else ws[row, p * L : (p + 1) * L].copy()
                    if piece.shape[0] < L:  # last piece when seq_len does not divide the packed length
                        fill = L - piece.shape[0]
                        piece = np.concatenate([piece, np.full(fill, self.pad_id, piece.dtype)])
                        if wsp is not None:
                            wsp = np.concatenate([wsp, np.ones(fill, bool)])
                    yield f"{base}/{row}/{p}", piece, wsp

    def _damaged(self, shard: str, sample: str, what: str) -> ShardFormatError:
        return ShardFormatError(
            f"{self.root}/{shard}, sample {sample}: {what}. The shard is damaged (an interrupted copy, "
            f"a bad disk); run `python -m data_tools verify {self.root}` to check every shard against the manifest, "
            "then copy the shard again or re-pack"
        )

    def _checked(self, src, url_to_name: dict[str, str], order: list[int]) -> Iterator[dict]:
        """The shards' samples, decoded and checked: a damaged tar or sample raises an error naming the shard,
        the sample and the fix (every rank reads every shard, so every rank raises it: no rank hangs)."""
        vocab = self.manifest.tokenizer.vocab_size
        expected = {s.name: s.samples for s in self.manifest.splits[self.split].shards}
        it = iter(src)
        last = (self.names[order[0]] if order else "?", "(the first)")
        seen = 0  # samples read from the current shard

        def shard_done(shard: str, key: str) -> None:
            # tarfile stops quietly at a damaged header: count what each shard gave against its manifest entry.
            if seen != expected.get(shard, seen):
                raise self._damaged(shard, f"after {key}", f"the archive ends after {seen} of its "
                                                           f"{expected[shard]} samples")

        while True:
            try:
                sample = next(it)
            except StopIteration:
                if order:
                    shard_done(*last)
                return
            except Exception as e:  # tarfile / webdataset errors: the archive itself is broken
                raise self._damaged(last[0], f"after {last[1]}", f"cannot read the tar archive ({e})") from e
            shard, key = url_to_name.get(sample.get("__url__"), "?"), sample.get("__key__", "?")
            if shard != last[0] and last[1] != "(the first)":
                shard_done(*last)
                seen = 0
            seen += 1
            last = (shard, key)
            try:
                ids, ws = decode_sample(sample, self.packed_len)
            except Exception as e:
                raise self._damaged(shard, key, f"cannot decode it ({type(e).__name__}: {e})") from e
            if ids.ndim != 2 or ids.shape[1] != self.packed_len or ids.dtype.kind not in "ui":
                raise self._damaged(shard, key, f"token ids of shape {ids.shape} and type {ids.dtype}, expected "
                                                f"[n, {self.packed_len}] integers")
            if ids.size and (int(ids.max()) >= vocab or int(ids.min()) < 0):
                raise self._damaged(shard, key, f"token ids outside the vocabulary (0..{vocab - 1}): "
                                                f"min {int(ids.min())}, max {int(ids.max())}")
            sample["ids"], sample["ws"] = ids, ws
            yield sample

    def epoch(self, epoch: int) -> Iterator[Piece]:
        order = list(range(len(self.paths)))
        if not self.shuffle:
            yield from self._pieces(order)
            return
        rng = np.random.default_rng([self.seed, epoch, 0])
        order = [int(i) for i in rng.permutation(len(order))]
        buf_rng = np.random.default_rng([self.seed, epoch, 1])
        buf: list[Piece] = []
        for item in self._pieces(order):
            if len(buf) < self.shuffle_buffer:
                buf.append(item)
                continue
            j = int(buf_rng.integers(len(buf)))
            yield buf[j]
            buf[j] = item
        buf_rng.shuffle(buf)
        yield from buf


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
        step, batch = 0, []
        for piece in d.stream.epoch(self.epoch):
            batch.append(piece)
            if len(batch) < G:
                continue
            if step >= self.start and (step - self.start) % nw == wid:
                yield [collate(batch[s], d.masker, d.mask_seed, self.epoch, d.stream.pad_id) for s in slices]
            step += 1
            batch = []
            if step >= d.steps_per_epoch:
                return


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
        """Endless ``(epoch, micro_batches)`` from global step ``start_step`` on, epoch after epoch.

        Raises ShardFormatError when an epoch yields fewer steps than the manifest promises (re-reading
        would loop forever on shards that do not match it).
        """
        spe = self.steps_per_epoch
        epoch, start = divmod(start_step, spe)
        while True:
            done = start
            for micro_batches in self.steps(epoch, start):
                done += 1
                yield epoch, micro_batches
            if done < spe:
                raise ShardFormatError(
                    f"epoch {epoch} of {self.stream.root} ended after {done} of {spe} steps: the shards do not match "
                    "their manifest; run `python -m data_tools verify` on them"
                )
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
    it = islice(stream.epoch(0), total)
    for _ in range(math.ceil(total / (m * w))):
        round_pieces = list(islice(it, m * w))
        mine = round_pieces[r * m : (r + 1) * m]
        yield collate(mine, masker, mask_seed, 0, stream.pad_id) if mine else None
