"""The sparse MLM head equals the full-logits loss; presets and config checks."""

from __future__ import annotations

import pytest
import torch

from roberta_ds.reading.masking import IGNORE_INDEX
from roberta_ds.training.model import ModelConfig, SparseMaskedLM, build_model, roberta_config
from roberta_ds.tokenizer import TokenizerInfo

TOK = TokenizerInfo(name="t", vocab_size=300, vocab_sha256="x", pad_id=0, unk_id=100, cls_id=101, sep_id=102, mask_id=103)


def test_sparse_loss_equals_full_logits_loss():
    model = build_model(roberta_config(ModelConfig("tiny", dropout=0.0), TOK, 32), seed=0).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(104, 300, (3, 32), generator=g)
    ids[:, 0] = TOK.cls_id
    ids[2, 20:] = TOK.pad_id
    attention = (ids != TOK.pad_id).long()
    labels = torch.full_like(ids, IGNORE_INDEX)
    pick = (torch.rand(ids.shape, generator=g) < 0.3) & (attention == 1)
    pick[:, 0] = False
    labels[pick] = ids[pick]
    flat = labels.view(-1)
    pos = torch.nonzero(flat != IGNORE_INDEX).squeeze(1)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=attention, labels=labels).loss  # HF: mean over labelled tokens
        loss_sum, correct = SparseMaskedLM(model)(ids, pos, flat[pos], attention)
        logits = model(input_ids=ids, attention_mask=attention).logits.view(-1, TOK.vocab_size)[pos]
    assert torch.allclose(loss_sum / pos.numel(), full, rtol=1e-5, atol=1e-6)
    assert int(correct) == int((logits.argmax(-1) == flat[pos]).sum())


def test_decoder_is_tied_and_positions_fit_the_bert_vocab():
    cfg = roberta_config(ModelConfig("tiny"), TOK, 128)
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (0, 101, 102)
    assert cfg.max_position_embeddings == 130
    m = build_model(cfg, seed=0)
    assert m.lm_head.decoder.weight is m.roberta.embeddings.word_embeddings.weight


def test_base_preset_is_the_original_architecture():
    arch = ModelConfig("base").architecture()
    assert arch == dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    assert ModelConfig("base", num_hidden_layers=6).architecture()["num_hidden_layers"] == 6


def test_bad_model_flags_are_listed_together():
    with pytest.raises(ValueError) as e:
        ModelConfig("tiny", hidden_size=-1, dropout=1.5)
    assert "--hidden_size -1" in str(e.value) and "--dropout 1.5" in str(e.value)
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        ModelConfig("tiny", num_heads=3)
