"""BERT-architecture weights <-> ours (RobertaForMaskedLM): the one place that maps the names and the positions.

hfl's chinese-roberta-wwm-ext, the checkpoint Chinese users start from, is BERT-architecture; code written for it
loads ``BertModel`` / ``BertForSequenceClassification``. The two architectures compute the same thing for
unpadded (or right-padded) input, with these differences in the weights:
  * ``bert.*`` <-> ``roberta.*`` (same layer names otherwise; RobertaForMaskedLM has no pooler);
  * positions: RoBERTa numbers positions from pad_id + 1, so token i uses row i + 1 (pad 0), where BERT uses
    row i;
  * the MLM head: ``cls.predictions.transform.dense / LayerNorm / decoder / bias`` <->
    ``lm_head.dense / layer_norm / decoder / bias``;
  * token types: a run has one unless it was warm-started from a checkpoint with more (hfl's have two, kept);
    a BERT export of a one-type run gets two equal rows, so a pair's second segment (token type 1, which BERT
    tokenizers send) is read exactly as ours reads it.
"""

from __future__ import annotations

import torch

BERT_HEAD = {
    "cls.predictions.transform.dense.": "lm_head.dense.",
    "cls.predictions.transform.LayerNorm.": "lm_head.layer_norm.",
    "cls.predictions.decoder.": "lm_head.decoder.",
    "cls.predictions.bias": "lm_head.bias",
}


TO_OURS = {"bert.": "roberta.", **BERT_HEAD}
"""Name prefixes, BERT's -> ours (the first that matches is replaced); TO_BERT is the inverse."""
TO_BERT = {ours: theirs for theirs, ours in TO_OURS.items()}


def renamed(key: str, prefixes: dict[str, str]) -> str:
    for old, new in prefixes.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def bert_to_roberta(sd: dict[str, torch.Tensor], target_positions: int, pad_id: int) -> dict[str, torch.Tensor]:
    """A BERT state dict in our names, position rows shifted; every token-type row kept (a warm start gives the
    model as many token types as its source, so hfl's trained second segment row survives)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("bert.pooler."):
            continue  # RobertaForMaskedLM has no pooler
        k = renamed(k, TO_OURS)
        if k == "roberta.embeddings.position_embeddings.weight":
            shifted = torch.zeros(target_positions, v.shape[1], dtype=v.dtype)
            n = min(v.shape[0], target_positions - pad_id - 1)
            shifted[pad_id + 1 : pad_id + 1 + n] = v[:n]
            v = shifted
        out[k] = v
    return out


def roberta_to_bert(model):
    """A BertForMaskedLM computing what ``model`` (our RobertaForMaskedLM) computes on unpadded input."""
    from transformers import BertConfig, BertForMaskedLM

    cfg = model.config
    pad = cfg.pad_token_id
    positions = cfg.max_position_embeddings - pad - 1
    bert_cfg = BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
        hidden_act=cfg.hidden_act, hidden_dropout_prob=cfg.hidden_dropout_prob,
        attention_probs_dropout_prob=cfg.attention_probs_dropout_prob, max_position_embeddings=positions,
        type_vocab_size=max(2, cfg.type_vocab_size), initializer_range=cfg.initializer_range,
        layer_norm_eps=cfg.layer_norm_eps,
        pad_token_id=pad, tie_word_embeddings=True)
    bert = BertForMaskedLM(bert_cfg)
    sd = {}
    for k, v in model.state_dict().items():
        k = renamed(k, TO_BERT)
        if k == "bert.embeddings.position_embeddings.weight":
            v = v[pad + 1 : pad + 1 + positions]
        if k == "bert.embeddings.token_type_embeddings.weight" and v.shape[0] == 1:
            v = v.expand(2, -1)  # one type trained: the second segment reads as the first
        sd[k] = v.detach().clone()
    missing, unexpected = bert.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k not in ("cls.predictions.decoder.weight", "bert.embeddings.position_ids",
                                               "bert.embeddings.token_type_ids", "cls.predictions.decoder.bias")]
    if missing or unexpected:
        raise RuntimeError(f"BERT export: tensors not mapped: missing {missing}, unexpected {unexpected}")
    bert.tie_weights()
    return bert
