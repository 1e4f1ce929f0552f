"""Held-out metrics of a saved model (RUN/final_model or a checkpoint): the logic behind launcher/evaluate.py.

The numbers are those of ``evaluation.evaluate`` at its fixed 15 % masking and seed, the same
function the trainer calls, so `evaluate.py` on a run's final model reproduces the run's last
eval record (same split, same --max_sequences). Under the `deepspeed` launcher each rank
evaluates its share of every round of micro-batches and the sums are all-reduced.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch.distributed as dist

from roberta_ds.data import Layout, ShardStream
from roberta_ds.evaluation import evaluate
from roberta_ds.loading import data_conflicts, load_masked_lm
from roberta_ds.masking import EVAL_MASK_SEED
from roberta_ds.model import SparseMaskedLM
from roberta_ds.shard_format import SPLITS, read_manifest


@dataclass
class EvalConfig:
    """What to evaluate, on which data."""

    model: str
    """RUN/final_model, a checkpoint directory (global_stepN) or RUN/checkpoints (newest)."""
    data_dir: str
    """Shards written by `python -m data_tools pack`."""
    split: str = "validation"
    """Manifest split to evaluate on."""
    micro_batch: int = 16
    """Sequences per forward per process (does not change the numbers)."""
    max_sequences: int | None = None
    """Only the first N sequences of the split (use the same N for runs you compare)."""
    max_seq_length: int | None = None
    """Evaluation length; default the shards' packed length, capped at the model's positions."""
    out: str | None = None
    """Also write the JSON result here."""

    def __post_init__(self) -> None:
        problems = []
        if self.split not in SPLITS:
            problems.append(f"--split {self.split!r}: choose one of {list(SPLITS)}")
        if self.micro_batch < 1:
            problems.append(f"--micro_batch {self.micro_batch}: must be >= 1")
        if self.max_sequences is not None and self.max_sequences < 1:
            problems.append(f"--max_sequences {self.max_sequences}: must be >= 1 (omit it for the whole split)")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            problems.append(f"--max_seq_length {self.max_seq_length}: must be >= 8")
        if not Path(self.data_dir).is_dir():
            problems.append(f"--data_dir {self.data_dir}: no such directory (make one with `python -m data_tools pack`)")
        if not Path(self.model).is_dir():
            problems.append(f"--model {self.model}: no such directory (RUN/final_model or a checkpoint directory)")
        if problems:
            raise ValueError("invalid settings:\n  " + "\n  ".join(problems))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python launcher/evaluate.py",
        description="Held-out masked-LM loss, perplexity and accuracy of a saved model at a fixed 15 % masking "
                    "and seed (comparable across runs). JSON on stdout.",
    )
    a = p.add_argument
    a("--model", required=True, help="RUN/final_model, RUN/checkpoints/global_stepN, or RUN/checkpoints (newest)")
    a("--data_dir", required=True, help="shards written by `python -m data_tools pack`")
    a("--split", default="validation", help="manifest split (default validation)")
    a("--micro_batch", type=int, default=16, help="sequences per forward per process")
    a("--max_sequences", type=int, help="evaluate the first N sequences only (same N for compared runs)")
    a("--max_seq_length", type=int, help="default: the shards' packed length")
    a("--out", help="also write the JSON result to this file")
    a("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)  # passed by the deepspeed launcher
    return p


def parse_args(argv: list[str] | None = None) -> EvalConfig:
    d = vars(build_parser().parse_args(argv))
    return EvalConfig(**{k: d[k] for k in EvalConfig.__dataclass_fields__})


def run(cfg: EvalConfig) -> dict:
    """Evaluate on every rank; returns the (all-reduced, identical on every rank) result."""
    from roberta_ds.engine import device, init_distributed  # imports deepspeed: keep --help fast

    root = Path(cfg.data_dir)
    manifest = read_manifest(root)
    loaded = load_masked_lm(cfg.model)
    seq_len = cfg.max_seq_length or min(manifest.max_seq_length, loaded.max_seq_length)
    problems = data_conflicts(loaded, manifest.tokenizer, seq_len)
    if problems:
        raise ValueError(f"model {loaded.path} cannot be evaluated on {root}:\n  " + "\n  ".join(problems)
                         + "\nEvaluate on shards packed with the model's tokenizer "
                           f"(`python -m data_tools pack --tokenizer_path {loaded.path}`).")
    # Checked before joining the process group: a mismatch fails fast, on every rank alike.
    rank, world, _ = init_distributed()
    dev = device()
    stream = ShardStream(root, manifest, cfg.split, seq_len, EVAL_MASK_SEED, shuffle=False)
    layout = Layout(micro_batch=cfg.micro_batch, grad_accum=1, world_size=world, rank=rank)
    model = SparseMaskedLM(loaded.mlm).to(dev).eval()
    t0 = time.perf_counter()
    res = evaluate(model, stream, layout, cfg.max_sequences, dev)
    return {
        "model": str(loaded.path), "model_kind": loaded.kind, "data_dir": str(root.resolve()), "split": cfg.split,
        "seq_len": seq_len, "max_sequences": cfg.max_sequences, "world_size": world, "micro_batch": cfg.micro_batch,
        "mask_seed": EVAL_MASK_SEED, **res, "eval_time_s": time.perf_counter() - t0,
        "settings": asdict(cfg),
    }


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
        res = run(cfg)
    except ValueError as e:  # bad settings, model or data: one message, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:  # the result is all-reduced: rank 0 speaks for all
        text = json.dumps(res, indent=1, ensure_ascii=False)
        print(text)
        if cfg.out:
            Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.out).write_text(text + "\n", encoding="utf-8")
    return 0
