"""Checkpoints: DeepSpeed engine state plus a small JSON record, enough to resume exactly.

Layout of ``RUN/checkpoints/``::

    latest                      tag of the newest complete checkpoint (written by DeepSpeed)
    global_step100/             DeepSpeed's files (model, optimizer shards per rank)
        roberta_ds_state.json   step, epoch, data cursor, counters, the exact effective configs
        rng_rank00003.pt        each rank's RNG states (dropout must replay exactly on resume)
        hf_config.json          the model architecture, so any checkpoint exports on its own
        tokenizer/              the tokenizer the model was trained with
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

STATE_NAME = "roberta_ds_state.json"
HF_CONFIG_NAME = "hf_config.json"
TOKENIZER_DIR = "tokenizer"


def tag_for(step: int) -> str:
    return f"global_step{step}"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(engine, ckpt_root: Path, step: int, state: dict, hf_config, tokenizer, rank: int, keep: int) -> Path:
    """Save on every rank (DeepSpeed requires all ranks to call save_checkpoint)."""
    import torch.distributed as dist

    tag = tag_for(step)
    engine.save_checkpoint(str(ckpt_root), tag=tag, client_state={"roberta_ds": state})
    tag_dir = ckpt_root / tag
    torch.save(rng_state(), tag_dir / f"rng_rank{rank:05d}.pt")
    if rank == 0:
        (tag_dir / HF_CONFIG_NAME).write_text(hf_config.to_json_string())
        tokenizer.save_pretrained(str(tag_dir / TOKENIZER_DIR))
    if dist.is_initialized():
        dist.barrier()
    if rank == 0:
        # Written last, once every rank's files exist: its presence is what marks the checkpoint complete.
        tmp = tag_dir / (STATE_NAME + ".tmp")
        tmp.write_text(json.dumps(state, indent=1, ensure_ascii=False))
        os.replace(tmp, tag_dir / STATE_NAME)
        if keep > 0:
            for old in list_checkpoints(ckpt_root)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    if dist.is_initialized():
        dist.barrier()
    return tag_dir


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoints (with our state file), oldest first."""
    if not ckpt_root.exists():
        return []
    found = [p for p in ckpt_root.glob("global_step*") if (p / STATE_NAME).exists()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("global_step")))


def resolve_resume(arg: str | None, ckpt_root: Path) -> Path | None:
    """'auto' -> the newest complete checkpoint under the run (or None to start fresh); a path -> that checkpoint."""
    if arg is None:
        return None
    if arg == "auto":
        found = list_checkpoints(ckpt_root)
        return found[-1] if found else None
    p = Path(arg)
    if (p / STATE_NAME).exists():
        return p
    found = list_checkpoints(p)
    if found:
        return found[-1]
    raise ValueError(
        f"--resume_from_checkpoint {arg}: no checkpoint there (expected a global_stepN directory with "
        f"{STATE_NAME}, or a checkpoints/ directory holding them); use 'auto' to resume the run's latest"
    )


def read_state(tag_dir: Path) -> dict:
    return json.loads((tag_dir / STATE_NAME).read_text())


def load(engine, tag_dir: Path, rank: int) -> None:
    """Load engine state (weights, optimizer, scheduler) and this rank's RNG (the JSON record: read_state)."""
    load_path, _ = engine.load_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
    if load_path is None:
        raise RuntimeError(f"DeepSpeed could not load the checkpoint at {tag_dir}")
    rng_file = tag_dir / f"rng_rank{rank:05d}.pt"
    if not rng_file.exists():
        raise ValueError(
            f"{rng_file} is missing: this checkpoint was saved by fewer ranks than this run has "
            "(resume with the same number of processes), or it is incomplete"
        )
    set_rng_state(torch.load(rng_file, weights_only=False))
