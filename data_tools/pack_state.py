"""The pack's resume state: DIR/.pack_state, written after every completed shard, read to finish a killed pack.

``state.json`` records the options that shape the output (a resume with other options is refused,
naming them), the documents consumed from the reader, the processing counters, and per split its
completed shards (with sha256) and its hash count. Bounded array payloads (pending sequences,
carry-over tokens, token counts) go to ``gen-<n>-<split>.npz``; the hashes go to an append-only
``<split>-hashes.u64`` (raw little-endian uint64) that each checkpoint extends by only the hashes
added since the previous one, so checkpoint I/O is linear in the corpus, not quadratic. Both are
written before the JSON that names them and counts the hashes; resume reads exactly that many
(bytes past them are from a checkpoint that never completed), so a kill at any point leaves a
consistent older state. A finished pack (manifest.json written) deletes the directory, state.json first.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from data_tools.shard_writer import HASH_DTYPE, SplitWriter
from roberta_ds.owned_dir import claim_dir
from roberta_ds.shard_format import MANIFEST_NAME, SPLITS, TOKENIZER_DIRNAME, ShardInfo, sha256_file

STATE_DIRNAME = ".pack_state"
STATE_NAME = "state.json"
NEAR_INDEX_NAME = "near-minhashes.bin"


@dataclass
class Counters:
    """Processing counts (the reader keeps its own in ReadStats); saved with every checkpoint."""

    documents_empty: int = 0
    duplicates_dropped: int = 0
    documents_kept: int = 0
    document_tokens: int = 0
    unk_tokens: int = 0
    normalization_replacements: int = 0
    documents_other_parts: int = 0
    """--part I/N: documents read that belong to other parts (not tokenized, not packed)."""
    unk_chars: Counter = field(default_factory=Counter)
    category_kept: Counter = field(default_factory=Counter)
    """thucnews: documents kept (packed) per category."""
    filtered: Counter = field(default_factory=Counter)
    """Documents dropped by each filter, by its reason (data_tools.steps)."""
    filter_examples: dict = field(default_factory=dict)
    """The first few documents each quality filter dropped (their first characters), for the manifest."""
    near_duplicates_dropped: int = 0
    """Documents dropped as near-duplicates (--near_dedup, --drop_list)."""
    near_duplicate_examples: list = field(default_factory=list)
    """The first few of them: input number, the kept document's (inline only) and the first characters."""

    _COUNTERS = ("unk_chars", "category_kept", "filtered")

    def to_state(self) -> dict:
        return {k: dict(v) if k in self._COUNTERS else v for k, v in vars(self).items()}

    @classmethod
    def from_state(cls, d: dict) -> "Counters":
        return cls(**{k: Counter(v) if k in cls._COUNTERS else v for k, v in d.items()})


def prepare_output(out: Path, options: dict) -> dict | None:
    """The resume state of an unfinished pack made with these ``options``, or None for a fresh start (after
    removing the leftovers of our own run killed before its first checkpoint: owned_dir.claim_dir); refuse
    anything ambiguous, and anything we did not write."""
    state = load_state(out) if out.exists() else None
    if state is not None:
        from data_tools.quality import comparable

        old, now = comparable(state["options"]), comparable(options)
        diff = [f"--{k}: {old.get(k)!r} before, {v!r} now" for k, v in now.items() if old.get(k) != v]
        if diff:
            raise ValueError(
                f"{out} holds an unfinished pack made with different options ({'; '.join(diff)}). "
                "Re-run the original command to finish it, or choose a new --output."
            )
        return state
    if (out / MANIFEST_NAME).exists():
        clear_state(out)  # leftovers of a finished pack killed while removing its resume state
        raise ValueError(f"{out} already holds a finished dataset (manifest.json); choose a new --output or delete it.")
    claim_dir(out, "data_tools pack", {*SPLITS, TOKENIZER_DIRNAME, STATE_DIRNAME, MANIFEST_NAME + ".tmp"},
              flag="--output", what="a data_tools dataset")
    return None


class Checkpoints:
    """Saves the state of a pack into ``root`` after every completed shard, and restores writers from it."""

    def __init__(self, root: Path, options: dict):
        self.root, self.options = root, options
        self.generation = 0
        """Checkpoints written so far (by this and earlier runs): names the npz files of the latest one."""
        self.hashes_saved: dict[str, int] = {}
        """Per split: how many of its writer's hashes the split's hash file holds."""
        self.index = None
        """The near-duplicate index (--near_dedup): its kept signatures are saved with every checkpoint."""
        self.index_saved = 0
        """Bytes of NEAR_INDEX_NAME the last checkpoint counted."""

    def restore(self, state: dict, writers: dict[str, SplitWriter]) -> tuple[int, Counters]:
        """Put every writer back where the checkpoint ``state`` left it; returns (documents consumed, counters)."""
        out = self.root
        self.generation = state["generation"]
        for name, w in writers.items():
            sstate = state["splits"][name]
            for sh in sstate["shards"]:
                p = out / sh["name"]
                if not p.exists() or sha256_file(p) != sh["sha256"]:
                    raise ValueError(
                        f"{p}: completed shard is missing or changed since the last checkpoint; "
                        f"delete {out} and pack again."
                    )
            arrays = load_state_arrays(out, sstate["arrays"])
            hashes = load_state_hashes(out, sstate["hashes"], sstate["hash_count"])
            if "token_counts" not in arrays:
                raise ValueError(f"{out}: the resume state was written by an older data_tools without token counts; "
                                 f"delete {out} and pack again.")
            w.restore([ShardInfo(**s) for s in sstate["shards"]], hashes, arrays["token_counts"], arrays["pending"],
                      arrays.get("pending_ws"), arrays["carry"], arrays.get("carry_ws"))
            self.hashes_saved[name] = len(hashes)
        if self.index is not None:
            self.index_saved = state.get("near_index_bytes", 0)
            self.index.restore(out / STATE_DIRNAME / NEAR_INDEX_NAME, self.index_saved)
        return state["documents_consumed"], Counters.from_state(state["counters"])

    def save(self, writers: dict[str, SplitWriter], consumed: int, counters: Counters) -> None:
        """Write the next checkpoint: arrays and new hashes first, then the state.json naming them."""
        self.generation += 1
        gen = self.generation
        sdir = self.root / STATE_DIRNAME
        sdir.mkdir(exist_ok=True)
        splits = {}
        for name, w in writers.items():
            fname = f"gen-{gen}-{name}.npz"
            with (sdir / fname).open("wb") as fh:
                np.savez(fh, **_split_arrays(w))
            hashes = f"{name}-hashes.u64"
            count = self._append_new_hashes(name, w, sdir / hashes)
            splits[name] = {"arrays": fname, "hashes": hashes, "hash_count": count,
                            "shards": [asdict(s) for s in w.shards]}
        state = {"generation": gen, "options": self.options, "documents_consumed": consumed,
                 "counters": counters.to_state(), "splits": splits}
        if self.index is not None:
            self.index_saved = state["near_index_bytes"] = self.index.save(sdir / NEAR_INDEX_NAME, self.index_saved)
        tmp = sdir / (STATE_NAME + ".tmp")
        tmp.write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, sdir / STATE_NAME)
        for old in sdir.glob("gen-*.npz"):  # only after the new state.json names the new files
            if not old.name.startswith(f"gen-{gen}-"):
                old.unlink()

    def _append_new_hashes(self, name: str, w: SplitWriter, path: Path) -> int:
        """Append the hashes added since the last checkpoint to ``path``; return the total count.

        Writes at the checkpointed length, dropping anything past it (left by a checkpoint that
        was killed before its state.json), so the file always equals the first ``count`` hashes.
        """
        saved = self.hashes_saved.get(name, 0)
        with path.open("r+b" if path.exists() else "wb") as fh:
            fh.seek(saved * HASH_DTYPE.itemsize)
            fh.truncate()
            fh.write(w.hashes.view()[saved:].tobytes())
        self.hashes_saved[name] = len(w.hashes)
        return self.hashes_saved[name]

    def clear(self) -> None:
        clear_state(self.root)


def _split_arrays(w: SplitWriter) -> dict[str, np.ndarray]:
    """The bounded part of a split's state (its hashes go to the append-only hash file)."""
    ids, ws = w.pending_sequences()
    arrays = {"pending": ids, "carry": w.packer.carry, "token_counts": w.token_counts}
    if ws is not None:
        arrays["pending_ws"] = ws
        arrays["carry_ws"] = w.packer.carry_ws
    return arrays


def load_state(root: Path) -> dict | None:
    path = root / STATE_DIRNAME / STATE_NAME
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def load_state_arrays(root: Path, fname: str) -> dict[str, np.ndarray]:
    with np.load(root / STATE_DIRNAME / fname, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_state_hashes(root: Path, fname: str, count: int) -> np.ndarray:
    """The first ``count`` hashes of the split's hash file (the checkpointed ones)."""
    path = root / STATE_DIRNAME / fname
    have = path.stat().st_size // HASH_DTYPE.itemsize if path.exists() else 0
    if have < count:
        raise ValueError(f"{path}: {have} hashes, the resume state needs {count}; delete {root} and pack again.")
    return np.fromfile(path, dtype=HASH_DTYPE, count=count)


def clear_state(root: Path) -> None:
    sdir = root / STATE_DIRNAME
    if sdir.exists():
        # state.json first: a kill midway must not leave a state naming files already deleted
        (sdir / STATE_NAME).unlink(missing_ok=True)
        for f in sdir.iterdir():
            f.unlink()
        sdir.rmdir()
