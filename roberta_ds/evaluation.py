"""Held-out masked-LM metrics at a fixed 15 % masking and fixed seed, so runs compare.

loss        = sum of cross-entropy over masked tokens / number of masked tokens (nats), all ranks
perplexity  = exp(loss)
accuracy    = masked tokens whose argmax prediction is the original token / masked tokens
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist

from roberta_ds.data import Layout, ShardStream, eval_batches, model_inputs, to_device
from roberta_ds.masking import EVAL_MASK_SEED, Masker

DEFINITIONS = {
    "loss": "sum of cross-entropy (nats) over masked tokens / masked tokens, all ranks",
    "perplexity": "exp(loss)",
    "accuracy": "masked tokens predicted exactly (argmax) / masked tokens",
    "masking": f"15 % of non-special tokens, 80/10/10 [MASK]/random/kept, seed {EVAL_MASK_SEED}",
}


def metrics_from_sums(loss_sum: float, correct: float, masked: float, sequences: float) -> dict:
    loss = loss_sum / masked if masked else float("nan")
    return {
        "loss": loss,
        "perplexity": math.exp(loss) if masked and loss < 700 else float("inf"),
        "accuracy": correct / masked if masked else float("nan"),
        "masked_tokens": int(masked),
        "sequences": int(sequences),
        "definitions": DEFINITIONS,
    }


def _limited(batches: Iterator[dict | None], layout: Layout, max_sequences: int | None) -> Iterator[dict | None]:
    if max_sequences is None:
        yield from batches
        return
    rounds = -(-max_sequences // (layout.micro_batch * layout.world_size))
    for i, b in enumerate(batches):
        if i >= rounds:
            return
        yield b


@torch.no_grad()
def evaluate(
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    stream: ShardStream,
    layout: Layout,
    masker: Masker,
    max_sequences: int | None,
    device: torch.device,
    dummy: dict,
) -> dict:
    """Run ``forward`` over the split; every rank runs the same number of forwards (``dummy`` where it has no data)."""
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss_sum, correct, masked, sequences
    for batch in _limited(eval_batches(stream, layout, masker, EVAL_MASK_SEED), layout, max_sequences):
        b = batch if batch is not None else dummy
        loss_sum, correct = forward(**model_inputs(to_device(b, device)))
        if batch is not None:
            sums += torch.stack([loss_sum.double(), correct.double(),
                                 torch.tensor(float(batch["n_masked"]), dtype=torch.float64, device=device),
                                 torch.tensor(float(batch["input_ids"].shape[0]), dtype=torch.float64, device=device)])
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(sums)
    return metrics_from_sums(*sums.tolist())


def dummy_batch(seq_len: int, pad_id: int, cls_id: int) -> dict:
    """One [CLS]-only row with no masked token: keeps a rank in step with the collectives, adds nothing."""
    ids = torch.full((1, seq_len), pad_id, dtype=torch.long)
    ids[0, 0] = cls_id
    return {"input_ids": ids, "attention_mask": (ids != pad_id).long(),
            "masked_positions": torch.zeros(0, dtype=torch.long), "masked_labels": torch.zeros(0, dtype=torch.long)}


def evaluate_engine(engine, stream: ShardStream, layout: Layout, masker: Masker, max_sequences: int | None,
                    device: torch.device) -> dict:
    engine.eval()
    try:
        tok = stream.manifest.tokenizer
        return evaluate(engine, stream, layout, masker, max_sequences, device,
                        dummy_batch(stream.seq_len, tok.pad_id, tok.cls_id))
    finally:
        engine.train()
