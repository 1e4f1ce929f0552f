"""The model: transformers' RobertaForMaskedLM with a sparse MLM loss, its Hugging Face config (attention kind,
padded vocabulary), and reloading a saved one.

We never hand-write the transformer: the export is a standard Hugging Face model.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, RobertaConfig, RobertaForMaskedLM

from roberta_ds.tokenizer import POSITION_OFFSET, TokenizerInfo
from roberta_ds.training.model import attention
from roberta_ds.training.model.settings import POSITION_INITS, PRESETS, ModelConfig  # noqa: F401 (re-exported)

UNPADDED = "unpadded_vocab_size"
"""The config key of a padded model: the tokenizer's rows (the rows from there to vocab_size are padding)."""


def padded_size(vocab_size: int, multiple: int) -> int:
    return -(-vocab_size // multiple) * multiple


def real_vocab_size(config) -> int:
    """The tokenizer's rows of a (maybe padded) model's vocabulary."""
    return int(getattr(config, UNPADDED, None) or config.vocab_size)


def roberta_config(cfg: ModelConfig, tok: TokenizerInfo, max_seq_length: int) -> RobertaConfig:
    """A RobertaConfig for the BERT Chinese vocab.

    RobertaConfig defaults to pad id 1 and derives position ids from the pad id
    (positions start at pad_id + 1), so with the BERT vocab pad is 0 and the table needs
    max_seq_length + 2 rows (docs/design.md, "Tokenizer").
    """
    padded = padded_size(tok.vocab_size, cfg.vocab_multiple)
    return RobertaConfig(
        vocab_size=padded,
        **({UNPADDED: tok.vocab_size} if padded != tok.vocab_size else {}),
        max_position_embeddings=max_seq_length + POSITION_OFFSET,
        type_vocab_size=1,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        pad_token_id=tok.pad_id,
        bos_token_id=tok.cls_id,
        eos_token_id=tok.sep_id,
        layer_norm_eps=1e-12,
        attn_implementation=cfg.attention,
        tie_word_embeddings=True,
        **cfg.architecture(),
    )


@torch.no_grad()
def unpad(model: RobertaForMaskedLM) -> RobertaForMaskedLM:
    """The model with the tokenizer's rows only (in place): what an export and a reload for evaluation hold, so
    stock clients (fill-mask, ONNX) never see a padding row."""
    n = real_vocab_size(model.config)
    if n == model.config.vocab_size:
        return model
    emb = model.roberta.embeddings.word_embeddings
    emb.weight = nn.Parameter(emb.weight[:n].clone())
    emb.num_embeddings = n
    model.lm_head.bias = nn.Parameter(model.lm_head.bias[:n].clone())
    model.lm_head.decoder.out_features = n
    model.config.vocab_size = n
    delattr(model.config, UNPADDED)
    model.tie_weights()
    model.lm_head.decoder.bias = model.lm_head.bias
    return model


def load_mlm(path: str | Path) -> RobertaForMaskedLM:
    """A saved Hugging Face model directory (an export), with the attention kind it records where that kind can run
    here (attention.reload_kind)."""
    config = AutoConfig.from_pretrained(str(path))
    return RobertaForMaskedLM.from_pretrained(str(path), config=config,
                                              attn_implementation=attention.reload_kind(config))


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
        self.vocab = real_vocab_size(mlm.config)
        """The tokenizer's rows: logits of padding rows (``--vocab_multiple``) are cut before the loss and argmax."""

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
        logits = self.mlm.lm_head(flat)[:, : self.vocab].float()
        loss_sum = F.cross_entropy(logits, masked_labels, reduction="sum")
        correct = (logits.argmax(dim=-1) == masked_labels).sum()
        if return_hidden:
            return loss_sum, correct, hidden
        return loss_sum, correct
