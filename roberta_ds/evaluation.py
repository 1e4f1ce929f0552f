"""Held-out masked-LM metrics at a fixed 15 % masking and fixed seed, so runs compare.

loss        = sum of cross-entropy over masked tokens / number of masked tokens (nats), all ranks
perplexity  = exp(loss)
accuracy    = masked tokens whose argmax prediction is the original token / masked tokens
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist

from roberta_ds.data import Layout, ShardStream, eval_batches, model_inputs, to_device
from roberta_ds.masking import EVAL_MASK_SEED, EVAL_MASKING, Masker

DEFINITIONS = {
    "loss": "sum of cross-entropy (nats) over masked tokens / masked tokens, all ranks",
    "perplexity": "exp(loss)",
    "accuracy": "masked tokens predicted exactly (argmax) / masked tokens",
    "masking": f"{EVAL_MASKING.mask_prob:.0%} of non-special tokens, 80/10/10 [MASK]/random/kept, seed {EVAL_MASK_SEED}",
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


@torch.no_grad()
def evaluate(
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    stream: ShardStream,
    layout: Layout,
    max_sequences: int | None,
    device: torch.device,
) -> dict:
    """Run ``forward`` over the split's first ``max_sequences`` sequences; every rank runs the same number of
    forwards (a dummy batch where it has no data left).

    The masking is always EVAL_MASKING with EVAL_MASK_SEED, whatever the run trained with.
    """
    tok = stream.manifest.tokenizer
    masker = Masker(EVAL_MASKING, tok)
    dummy = dummy_batch(stream.seq_len, tok.pad_id, tok.cls_id)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss_sum, correct: on the device, read once
    masked = sequences = 0  # known on the host
    for batch in eval_batches(stream, layout, masker, EVAL_MASK_SEED, max_sequences):
        b = batch if batch is not None else dummy
        loss_sum, correct = forward(**model_inputs(to_device(b, device)))
        if batch is not None:
            sums += torch.stack([loss_sum.double(), correct.double()])
            masked += batch["n_masked"]
            sequences += batch["input_ids"].shape[0]
    total = torch.cat([sums, torch.tensor([masked, sequences], dtype=torch.float64, device=device)])
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(total)
    return metrics_from_sums(*total.tolist())


def dummy_batch(seq_len: int, pad_id: int, cls_id: int) -> dict:
    """One [CLS]-only row with no masked token: keeps a rank in step with the collectives, adds nothing."""
    ids = torch.full((1, seq_len), pad_id, dtype=torch.long)
    ids[0, 0] = cls_id
    return {"input_ids": ids, "attention_mask": (ids != pad_id).long(),
            "masked_positions": torch.zeros(0, dtype=torch.long), "masked_labels": torch.zeros(0, dtype=torch.long)}


def evaluate_engine(engine, stream: ShardStream, layout: Layout, max_sequences: int | None,
                    device: torch.device) -> dict:
    engine.eval()
    try:
        return evaluate(engine, stream, layout, max_sequences, device)
    finally:
        engine.train()
