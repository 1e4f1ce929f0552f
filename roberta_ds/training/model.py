"""The model: transformers' RobertaForMaskedLM with a sparse MLM loss.

We never hand-write the transformer: the export is a standard Hugging Face model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import RobertaConfig, RobertaForMaskedLM

from roberta_ds.tokenizer import POSITION_OFFSET, TokenizerInfo
from roberta_ds.training.model_config import POSITION_INITS, PRESETS, ModelConfig  # noqa: F401 (re-exported)


def roberta_config(cfg: ModelConfig, tok: TokenizerInfo, max_seq_length: int) -> RobertaConfig:
    """A RobertaConfig for the BERT Chinese vocab.

    RobertaConfig defaults to pad id 1 and derives position ids from the pad id
    (positions start at pad_id + 1), so with the BERT vocab pad is 0 and the table needs
    max_seq_length + 2 rows (docs/design.md, "Tokenizer").
    """
    return RobertaConfig(
        vocab_size=tok.vocab_size,
        max_position_embeddings=max_seq_length + POSITION_OFFSET,
        type_vocab_size=1,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        pad_token_id=tok.pad_id,
        bos_token_id=tok.cls_id,
        eos_token_id=tok.sep_id,
        layer_norm_eps=1e-12,
        attn_implementation="sdpa",
        tie_word_embeddings=True,
        **cfg.architecture(),
    )


def build_model(config: RobertaConfig, seed: int, position_init: str = "random") -> RobertaForMaskedLM:
    # Seed right before init so the weights depend on the seed alone, not on what ran before.
    torch.manual_seed(seed)
    model = RobertaForMaskedLM(config)
    model.tie_weights()
    if position_init == "sinusoid":
        init_positions_sinusoid(model)
    return model


@torch.no_grad()
def init_positions_sinusoid(model: RobertaForMaskedLM) -> None:
    """Learned position embeddings that start as the sinusoid table (Vaswani et al. 2017), same std as BERT's init.

    Why: a random table gives no notion of "next to"; the sinusoid makes nearby positions similar from the
    first step, so attention can find the neighbouring characters sooner (issue 7's ablation measures it).
    RoBERTa's position ids start at pad_id + 1; row p + pad_id + 1 gets position p.
    """
    emb = model.roberta.embeddings.position_embeddings.weight
    n, h = emb.shape
    offset = model.config.pad_token_id + 1
    pos = torch.arange(n - offset, dtype=torch.float64).unsqueeze(1)
    div = torch.exp(torch.arange(0, h, 2, dtype=torch.float64) * (-math.log(10000.0) / h))
    table = torch.zeros(n - offset, h, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)[:, : h // 2]
    table *= model.config.initializer_range / table.std()
    emb[offset:] = table.to(emb.dtype)


class SparseMaskedLM(nn.Module):
    """Wraps RobertaForMaskedLM: encoder on every token, LM head on masked positions only.

    The LM head (dense + LayerNorm + vocab projection) is position-wise, so applying it
    to the gathered masked rows gives the same per-token logits as the full head, at
    ~15 % of the head's cost; with a 21k vocab the full head is the largest matmul.
    Masked positions come precomputed from the loader (flat indices), so there is no
    boolean indexing and no host sync in the step.
    """

    def __init__(self, mlm: RobertaForMaskedLM) -> None:
        super().__init__()
        self.mlm = mlm

    def forward(
        self,
        input_ids: torch.Tensor,
        masked_positions: torch.Tensor,
        masked_labels: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Returns (sum of cross-entropy over masked tokens in fp32, number of correct argmax predictions),
        plus the encoder's final hidden states [batch, seq, hidden] with ``return_hidden`` (evaluation's
        collapse check)."""
        hidden = self.mlm.roberta(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        flat = hidden.reshape(-1, hidden.shape[-1]).index_select(0, masked_positions)
        logits = self.mlm.lm_head(flat).float()
        loss_sum = F.cross_entropy(logits, masked_labels, reduction="sum")
        correct = (logits.argmax(dim=-1) == masked_labels).sum()
        if return_hidden:
            return loss_sum, correct, hidden
        return loss_sum, correct
