"""The model's settings used by every build and reload (issue 33): the attention kind is recorded in the checkpoint
and the export, and a stock reload uses it; a padded vocabulary's rows never enter the loss, the accuracy or a
prediction, and an export holds the tokenizer's rows only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from roberta_ds.tokenizer import TokenizerInfo
from roberta_ds.training.model import ModelConfig, SparseMaskedLM, attention, build_model, roberta_config
from roberta_ds.training.model.core import UNPADDED, real_vocab_size, unpad

TOK = TokenizerInfo(name="t", vocab_size=300, vocab_sha256="x", pad_id=0, unk_id=100, cls_id=101, sep_id=102, mask_id=103)


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(104, 300, (3, 32), generator=g)
    ids[:, 0] = TOK.cls_id
    pos = torch.arange(1, 3 * 32, 3)
    return ids, pos, ids.view(-1)[pos]


def _padded_twin():
    """A model padded to a multiple of 64 (300 -> 320 rows) with an unpadded model's weights in its first rows, and
    padding rows whose bias (+1e4) would win every argmax and the whole softmax if they took part."""
    plain = build_model(roberta_config(ModelConfig("tiny", dropout=0.0), TOK, 32), seed=0).eval()
    cfg = roberta_config(ModelConfig("tiny", dropout=0.0, vocab_multiple=64), TOK, 32)
    assert (cfg.vocab_size, getattr(cfg, UNPADDED)) == (320, 300) and real_vocab_size(cfg) == 300
    padded = build_model(cfg, seed=0).eval()
    sd = {k: v for k, v in plain.state_dict().items()}
    with torch.no_grad():
        for k, v in padded.state_dict().items():
            if v.shape == sd[k].shape:
                v.copy_(sd[k])
            else:
                v[:300] = sd[k]
        padded.lm_head.bias[300:] = 1e4
    return plain, padded


def test_padding_rows_never_reach_the_loss_the_accuracy_or_a_prediction():
    plain, padded = _padded_twin()
    ids, pos, labels = _batch()
    with torch.no_grad():
        want = SparseMaskedLM(plain)(ids, pos, labels)
        got = SparseMaskedLM(padded)(ids, pos, labels)
    assert torch.allclose(got[0], want[0], rtol=1e-5) and int(got[1]) == int(want[1])
    assert padded.lm_head.decoder.weight.shape[0] == 320  # the matmul itself runs over the padded rows


def test_unpad_keeps_the_tokenizers_rows_tied():
    plain, padded = _padded_twin()
    ids, _, _ = _batch(1)
    unpad(padded)
    assert padded.config.vocab_size == 300 and not hasattr(padded.config, UNPADDED)
    assert padded.lm_head.decoder.weight.data_ptr() == padded.roberta.embeddings.word_embeddings.weight.data_ptr()
    with torch.no_grad():
        assert torch.allclose(padded(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5)


def test_attention_kinds_are_checked_where_they_run():
    assert attention.problems("sdpa", "cpu", "fp32") == [] and attention.problems("eager", "cpu", "bf16") == []
    assert "CUDA GPUs only" in attention.problems("flash_attention_2", "cpu", "bf16")[0]
    assert any("bf16 or fp16" in p for p in attention.problems("flash_attention_2", "cuda", "fp32"))
    assert "CUDA GPUs only" in attention.problems("flex_attention", "cpu", "fp32")[0]
    with pytest.raises(ValueError, match="--attention 'fast'"):
        ModelConfig(attention="fast")
    with pytest.raises(ValueError, match="--vocab_multiple 0"):
        ModelConfig(vocab_multiple=0)
    # a kind a stock client may lack is recorded beside a portable one
    assert attention.recorded({}, "flash_attention_2") == {"attn_implementation": "sdpa",
                                                           attention.RECORD_KEY: "flash_attention_2"}
    assert attention.recorded({attention.RECORD_KEY: "x"}, "eager") == {"attn_implementation": "eager"}


def test_a_kind_is_one_entry_of_the_table(monkeypatch):
    # what a new kind needs is said in its entry; the checks, the reload and the export's record follow from it
    kind = attention.Kind("fused_x", "a CUDA kernel package", cuda_only=True, package="no_such_kernels_pkg",
                          install="pip install no-such-kernels", half_only=True)
    monkeypatch.setitem(attention.KINDS, kind.name, kind)
    assert attention.problems("fused_x", "cpu", "fp32") == [
        "--attention fused_x runs on CUDA GPUs only (this run is on cpu): use sdpa",
        "--attention fused_x needs the no-such-kernels-pkg package: pip install no-such-kernels",
        "--attention fused_x needs bf16 or fp16 (bf16.enabled or fp16.enabled in the DeepSpeed config); this run is fp32"]
    assert not attention.runnable("fused_x")
    assert attention.reload_kind(type("Config", (), {attention.RECORD_KEY: "fused_x"})()) == "sdpa"
    assert attention.recorded({}, "fused_x") == {"attn_implementation": "sdpa", attention.RECORD_KEY: "fused_x"}


@pytest.mark.slow  # a tiny run through the engine, an export, stock reloads
def test_a_run_with_eager_attention_and_a_padded_vocab_exports_what_stock_clients_reload(shard_dir: Path,
                                                                                        tmp_path: Path):
    from pretrain_helpers import run_pretrain
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    from roberta_ds.shard_format import read_manifest

    vocab = read_manifest(shard_dir).tokenizer.vocab_size
    assert vocab % 64  # else the padding would add nothing
    run = tmp_path / "run"
    assert run_pretrain(shard_dir, run, "zero2", 4, "--save_steps", "4", "--attention", "eager",
                        "--vocab_multiple", "64") == 0
    hf = json.loads(next((run / "checkpoints").glob("global_step*/hf_config.json")).read_text(encoding="utf-8"))
    assert hf["vocab_size"] == -(-vocab // 64) * 64 and hf[UNPADDED] == vocab and hf["attn_implementation"] == "eager"
    export = run / "final_model"
    config = json.loads((export / "config.json").read_text(encoding="utf-8"))
    assert config["vocab_size"] == vocab and UNPADDED not in config and config["attn_implementation"] == "eager"
    mlm = AutoModelForMaskedLM.from_pretrained(str(export))
    assert mlm.config._attn_implementation == "eager"
    assert mlm.get_input_embeddings().weight.shape[0] == vocab == len(AutoTokenizer.from_pretrained(str(export)))
    fill = pipeline("fill-mask", model=str(export), top_k=vocab)
    assert all(p["token"] < vocab for p in fill("今天[MASK]气很好"))  # every row ranked: none is padding


@pytest.mark.slow  # two tiny runs (one compiled on the CPU: ~a minute of compilation) and an export
def test_a_compiled_run_trains_as_the_eager_run_and_its_checkpoint_exports(shard_dir: Path, tmp_path: Path):
    """--compile: the losses of a compiled run equal the eager run's within 1e-4 (relative; dropout 0, so both runs
    draw the same masks and no dropout), and its checkpoint holds the usual parameter names (compiled in place), so
    it exports and a stock client reloads it."""
    from pretrain_helpers import run_pretrain, train_records
    from transformers import AutoModelForMaskedLM

    common = ("--save_steps", "3", "--dropout", "0", "--log_steps", "1")
    assert run_pretrain(shard_dir, tmp_path / "eager", "zero2", 3, *common) == 0
    assert run_pretrain(shard_dir, tmp_path / "compiled", "zero2", 3, *common, "--compile") == 0
    eager, compiled = ([r["loss"] for r in train_records(tmp_path / run)] for run in ("eager", "compiled"))
    assert len(eager) == len(compiled) == 3
    assert compiled == pytest.approx(eager, rel=1e-4), (compiled, eager)
    for run, compiled in (("eager", False), ("compiled", True)):
        effective = json.loads((tmp_path / run / "effective_config.json").read_text(encoding="utf-8"))
        assert effective["run"]["model"]["compile"] is compiled and effective["encoder_compiled"] is compiled
    mlm = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "compiled" / "final_model"))
    assert not any("_orig_mod" in k for k in mlm.state_dict())
