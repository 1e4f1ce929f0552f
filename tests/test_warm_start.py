"""--init_from: continue pretraining from a Hugging Face RoBERTa or BERT-architecture checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pretrain_helpers import run_pretrain, train_records
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertModel

from roberta_ds.training.model import ModelConfig, build_model, roberta_config
from roberta_ds.shard_format import read_manifest
from roberta_ds.training.model.hf_adapter import init_from_pretrained


def _bert(vocab_dir: Path, out: Path, with_head: bool, vocab_size: int | None = None) -> Path:
    tok = AutoTokenizer.from_pretrained(vocab_dir)
    cfg = BertConfig(vocab_size=vocab_size or len(tok), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=512, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    torch.manual_seed(1)
    model = BertForMaskedLM(cfg) if with_head else BertModel(cfg)
    model.save_pretrained(out)
    if vocab_size is None:
        tok.save_pretrained(out)
    return out


def _fresh(shard_dir: Path):
    m = read_manifest(shard_dir)
    return build_model(roberta_config(ModelConfig("tiny"), m.tokenizer, 128), seed=0), m.tokenizer


def test_bert_weights_map_onto_roberta_with_shifted_positions(vocab_dir: Path, shard_dir: Path, tmp_path: Path):
    src = _bert(vocab_dir, tmp_path / "bert", with_head=True)
    bert = BertForMaskedLM.from_pretrained(src)
    model, tok = _fresh(shard_dir)
    report = init_from_pretrained(model, str(src), tok, 128)
    assert report["fresh_tensors"] == [], report
    assert torch.equal(model.roberta.embeddings.word_embeddings.weight, bert.bert.embeddings.word_embeddings.weight)
    # RoBERTa numbers positions from pad_id + 1: its row i + 1 is BERT's row i.
    pos_r = model.roberta.embeddings.position_embeddings.weight
    pos_b = bert.bert.embeddings.position_embeddings.weight
    assert torch.equal(pos_r[1:129], pos_b[:128])
    q = "encoder.layer.1.attention.self.query.weight"
    assert torch.equal(model.roberta.state_dict()[q], bert.bert.state_dict()[q])
    assert torch.equal(model.lm_head.dense.weight, bert.cls.predictions.transform.dense.weight)
    assert torch.equal(model.lm_head.layer_norm.weight, bert.cls.predictions.transform.LayerNorm.weight)
    assert model.lm_head.decoder.weight is model.roberta.embeddings.word_embeddings.weight
    # Same inputs, same hidden states: the mapping is exact, not approximate.
    ids = torch.tensor([[tok.cls_id, 10, 11, 12, tok.sep_id]])
    with torch.no_grad():
        hr = model.eval().roberta(ids).last_hidden_state
        hb = bert.eval().bert(ids).last_hidden_state
    assert torch.allclose(hr, hb, atol=1e-5)


def test_encoder_only_checkpoint_reports_a_fresh_mlm_head(vocab_dir: Path, shard_dir: Path, tmp_path: Path):
    src = _bert(vocab_dir, tmp_path / "encoder", with_head=False)
    model, tok = _fresh(shard_dir)
    report = init_from_pretrained(model, str(src), tok, 128)
    assert "lm_head.dense.weight" in report["fresh_tensors"] and "lm_head.bias" in report["fresh_tensors"]
    assert not any(k.startswith("roberta.encoder") for k in report["fresh_tensors"])


def test_mismatched_checkpoint_lists_every_conflict(vocab_dir: Path, shard_dir: Path, tmp_path: Path):
    src = _bert(vocab_dir, tmp_path / "other", with_head=True, vocab_size=999)
    model, tok = _fresh(shard_dir)
    with pytest.raises(ValueError) as e:
        init_from_pretrained(model, str(src), tok, 600)
    msg = str(e.value)
    assert "vocab_size: run" in msg and "supports 512 positions, the run needs 600" in msg


def test_continued_pretraining_starts_where_the_source_left_off(shard_dir: Path, tmp_path: Path):
    first = tmp_path / "first"
    assert run_pretrain(shard_dir, first, "zero2", 12) == 0
    cont = tmp_path / "cont"
    assert run_pretrain(shard_dir, cont, "zero2", 4, "--init_from", str(first / "final_model")) == 0
    summary = json.loads((cont / "summary.json").read_text())
    assert summary["warm_start"]["fresh_tensors"] == []
    fresh_start = train_records(first)[0]["loss"]
    assert train_records(cont)[0]["loss"] < fresh_start - 0.5


def test_legacy_gamma_beta_layer_norm_names_load(vocab_dir: Path, shard_dir: Path, tmp_path: Path):
    """Older BERT checkpoints name LayerNorm parameters gamma/beta; they must not start fresh."""
    from safetensors.torch import load_file, save_file

    src = _bert(vocab_dir, tmp_path / "legacy", with_head=True)
    sd = load_file(src / "model.safetensors")
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in sd.items()}
    assert renamed.keys() != sd.keys()
    save_file(renamed, src / "model.safetensors", metadata={"format": "pt"})
    model, tok = _fresh(shard_dir)
    report = init_from_pretrained(model, str(src), tok, 128)
    assert report["fresh_tensors"] == [] and not any("gamma" in k for k in report["dropped_tensors"])


def test_a_hub_id_without_the_hub_says_how_to_bring_the_model(monkeypatch, tmp_path: Path):
    # --init_from takes a hub id; offline (no network here, HF_HUB_OFFLINE=1 as on a cluster node) and with nothing
    # cached, the message says how to get the model onto the machine.
    from roberta_ds.training.model.hf_adapter import resolve_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ValueError, match=r"--init_from hfl/chinese-roberta-wwm-ext: not a local directory.*"
                                         r"huggingface-cli download hfl/chinese-roberta-wwm-ext"):
        resolve_source("hfl/chinese-roberta-wwm-ext")


def test_a_bert_source_keeps_its_second_segment_row_through_pretraining_and_export(vocab_dir: Path, shard_dir: Path,
                                                                                   tmp_path: Path):
    # hfl's checkpoints are BERT-architecture with two token types; the run keeps both rows (the second is trained
    # there for sentence pairs), and the export's tokenizer then returns token_type_ids for pairs.
    src = _bert(vocab_dir, tmp_path / "bert", with_head=True)
    bert = BertForMaskedLM.from_pretrained(src)
    assert bert.config.type_vocab_size == 2
    run = tmp_path / "run"
    assert run_pretrain(shard_dir, run, "zero2", 4, "--init_from", str(src)) == 0
    from transformers import AutoModelForMaskedLM

    out = AutoModelForMaskedLM.from_pretrained(run / "final_model")
    assert out.config.type_vocab_size == 2
    row1_src = bert.bert.embeddings.token_type_embeddings.weight[1]
    row1_out = out.roberta.embeddings.token_type_embeddings.weight[1]
    # unused in pretraining: only AdamW's decoupled weight decay (4 steps at lr <= 2e-3) touched it
    assert torch.allclose(row1_out, row1_src, rtol=1e-3, atol=1e-6)
    tok = AutoTokenizer.from_pretrained(run / "final_model")
    assert int(tok("今天", "明天", return_tensors="pt")["token_type_ids"].max()) == 1
