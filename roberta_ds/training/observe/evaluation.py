"""Held-out masked-LM metrics at a fixed 15 % masking and fixed seed, so runs compare: of the engine
during training (``evaluate_engine``) and, through the same ``evaluate``, of a saved model
(saved_model.evaluate_saved, behind launcher/evaluate.py).

The metrics (loss, perplexity, accuracy) are defined in records.EVAL_DEFINITIONS.

Representation collapse (``collapse``): an encoder whose final hidden states are (nearly) the same
vector for every token and every input has learned nothing a classifier can use, even when its
loss sits at the unigram line and looks "fine" (issue 7: a demo model exported with a mean pairwise
cosine of 1.0000 between headlines and lost 45 points to random initialisation when fine-tuned).
Measured on the final hidden states of the first evaluation sequences this rank sees.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from roberta_ds.reading.data import Layout, ShardStream, eval_batches, model_inputs, to_device
from roberta_ds.reading.masking import EVAL_MASK_SEED, EVAL_MASKING, Masker
from roberta_ds.training.observe.records import COLLAPSE_SEQUENCES, COLLAPSE_TOKEN_COSINE, COLLAPSE_TOKENS, eval_metrics

def _mean_offdiag_cosine(x: torch.Tensor) -> float:
    if x.shape[0] < 2:
        return float("nan")
    u = torch.nn.functional.normalize(x.double(), dim=-1)
    gram = u @ u.T
    n = x.shape[0]
    return float((gram.sum() - gram.diagonal().sum()) / (n * (n - 1)))


def collapse_stats(hidden: torch.Tensor, real: torch.Tensor) -> dict:
    """Collapse measures (records.EVAL_DEFINITIONS["collapse"]) of final hidden states [n, seq, h] with real-token mask [n, seq]."""
    hidden, real = hidden.double(), real.bool()
    tokens = hidden[real]
    pick = torch.linspace(0, tokens.shape[0] - 1, min(COLLAPSE_TOKENS, tokens.shape[0])).round().long()
    pooled = (hidden * real.unsqueeze(-1)).sum(1) / real.sum(1, keepdim=True).clamp(min=1)
    cls = hidden[:, 0]
    spread = (cls - cls.mean(0)).pow(2).sum(-1).mean().sqrt() / cls.norm(dim=-1).mean().clamp(min=1e-30)
    token_cosine = _mean_offdiag_cosine(tokens[pick])
    return {
        "token_cosine": token_cosine,
        "sequence_cosine": _mean_offdiag_cosine(pooled),
        "cls_relative_spread": float(spread),
        "sequences": int(hidden.shape[0]),
        "collapsed": bool(token_cosine > COLLAPSE_TOKEN_COSINE),
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
    hidden, real = [], []  # the first COLLAPSE_SEQUENCES sequences' final hidden states (host copies)
    for batch in eval_batches(stream, layout, masker, EVAL_MASK_SEED, max_sequences):
        b = batch if batch is not None else dummy
        want_hidden = sum(h.shape[0] for h in hidden) < COLLAPSE_SEQUENCES
        out = forward(**model_inputs(to_device(b, device)), return_hidden=want_hidden)
        loss_sum, correct = out[0], out[1]
        if batch is not None:
            sums += torch.stack([loss_sum.double(), correct.double()])
            masked += batch["n_masked"]
            sequences += batch["input_ids"].shape[0]
            if want_hidden:
                hidden.append(out[2].detach().float().cpu())
                real.append(batch["input_ids"] != tok.pad_id)
    total = torch.cat([sums, torch.tensor([masked, sequences], dtype=torch.float64, device=device)])
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(total)
    res = eval_metrics(*total.tolist())
    if hidden:
        res["collapse"] = collapse_stats(torch.cat(hidden)[:COLLAPSE_SEQUENCES], torch.cat(real)[:COLLAPSE_SEQUENCES])
    return res


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


def combine(parts: dict[str, dict]) -> dict:
    """Sources' held-out metrics (``evaluate``'s results) -> their total: every masked token of every source counts
    once (loss and accuracy weighted by masked tokens)."""
    masked = sum(p["masked_tokens"] for p in parts.values())
    loss_sum = sum(p["loss"] * p["masked_tokens"] for p in parts.values() if p["masked_tokens"])
    correct = sum(p["accuracy"] * p["masked_tokens"] for p in parts.values() if p["masked_tokens"])
    return eval_metrics(loss_sum, correct, masked, sum(p["sequences"] for p in parts.values()))


def evaluate_sources(engine, streams: dict[int, dict[str, ShardStream]], layout: Layout, max_sequences: int | None,
                     device: torch.device) -> dict:
    """Mixtures and phases: each source's validation split (its first ``max_sequences`` sequences) at every
    evaluated length, fixed masking. The headline numbers (the Evaluation's own fields) are the total over the
    sources at the last length (the final phase's, the one the export is used at); the unigram line of the total is
    the sources' lines weighted by masked tokens."""
    engine.eval()
    try:
        results = {L: {name: evaluate(engine, st, layout, max_sequences, device) for name, st in by_source.items()}
                   for L, by_source in streams.items()}
    finally:
        engine.train()
    for L, by_source in results.items():
        for name, r in by_source.items():
            unigram = streams[L][name].manifest.unigram_nats
            r.update(unigram_nats=unigram, below_unigram=None if unigram is None else unigram - r["loss"])
    headline = list(results)[-1]
    parts = results[headline]
    out = combine(parts)
    lines = [(p["unigram_nats"], p["masked_tokens"]) for p in parts.values()]
    if all(u is not None for u, _ in lines) and out["masked_tokens"]:
        out["unigram_nats"] = sum(u * n for u, n in lines) / out["masked_tokens"]
        out["below_unigram"] = out["unigram_nats"] - out["loss"]
    first = next(iter(parts.values()))
    if "collapse" in first:
        out["collapse"] = first["collapse"]
    short = ("loss", "perplexity", "accuracy", "masked_tokens", "sequences", "unigram_nats", "below_unigram")
    out["sources"] = {name: {k: r[k] for k in short} for name, r in parts.items()}
    if len(results) > 1:
        totals = {L: combine(by) for L, by in results.items()}
        out["lengths"] = {str(L): {**{k: totals[L][k] for k in ("loss", "accuracy", "masked_tokens")},
                                   "sources": {n: {k: r[k] for k in short} for n, r in by.items()}}
                          for L, by in results.items()}
    out["seq_len"] = headline
    return out
