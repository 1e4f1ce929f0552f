"""Continue pretraining from a Hugging Face checkpoint: RoBERTa, or BERT-architecture.

hfl's chinese-roberta-wwm-ext is BERT-architecture and ships no MLM head, so BERT weights
are mapped onto RobertaForMaskedLM:
  * ``bert.*`` -> ``roberta.*`` (same layer names otherwise);
  * position embeddings shift by one row: RoBERTa numbers positions from pad_id + 1, so
    token i uses row i + 1 (with pad 0), where BERT used row i;
  * ``cls.predictions.transform.dense / LayerNorm / decoder / bias`` -> ``lm_head.dense / layer_norm / decoder / bias``;
  * token-type embeddings keep row 0 (we use one segment type).
Tensors the source lacks (e.g. the MLM head) keep their fresh initialisation and are reported.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, RobertaForMaskedLM

from roberta_ds.checkpoint import TIED
from roberta_ds.tokenizer import TokenizerInfo, load_tokenizer, tokenizer_info

BERT_HEAD = {
    "cls.predictions.transform.dense.": "lm_head.dense.",
    "cls.predictions.transform.LayerNorm.": "lm_head.layer_norm.",
    "cls.predictions.decoder.": "lm_head.decoder.",
    "cls.predictions.bias": "lm_head.bias",
}


def _source_state_dict(path: Path, model_type: str) -> dict[str, torch.Tensor]:
    """The tensors actually stored in the checkpoint files.

    Not via from_pretrained: AutoModelForMaskedLM silently initialises a missing MLM head,
    and we must report which tensors start fresh.
    """
    files = sorted(path.glob("*.safetensors"))
    if files:
        sd = {}
        for f in files:
            sd.update(load_file(str(f)))
    elif (path / "pytorch_model.bin").exists():
        sd = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ValueError(f"--init_from {path}: no model.safetensors or pytorch_model.bin in it")
    # Older BERT checkpoints (Google's TF conversions) name LayerNorm parameters gamma/beta.
    sd = {_legacy_layer_norm(k): v for k, v in sd.items()}
    if not any(k.startswith(("roberta.", "bert.", "lm_head.", "cls.")) for k in sd):
        sd = {f"{model_type}.{k}": v for k, v in sd.items()}  # bare encoder (BertModel) keys lack the prefix
    return sd


def _legacy_layer_norm(key: str) -> str:
    if key.endswith(".gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith(".beta"):
        return key[: -len("beta")] + "bias"
    return key


def _map_bert(sd: dict[str, torch.Tensor], target_positions: int, pad_id: int) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.startswith("bert.pooler."):
            continue  # RobertaForMaskedLM has no pooler
        if k.startswith("bert."):
            k = "roberta." + k[len("bert."):]
        for old, new in BERT_HEAD.items():
            if k.startswith(old):
                k = new + k[len(old):]
        if k == "roberta.embeddings.position_embeddings.weight":
            shifted = torch.zeros(target_positions, v.shape[1], dtype=v.dtype)
            n = min(v.shape[0], target_positions - pad_id - 1)
            shifted[pad_id + 1 : pad_id + 1 + n] = v[:n]
            v = shifted
        if k == "roberta.embeddings.token_type_embeddings.weight":
            v = v[:1]
        out[k] = v
    return out


def init_from_pretrained(model: RobertaForMaskedLM, path: str, tok: TokenizerInfo, seq_len: int) -> dict:
    """Load weights into ``model`` in place; return what was loaded, initialised fresh, and dropped."""
    path = Path(path)
    src_cfg = AutoConfig.from_pretrained(str(path))
    cfg = model.config
    problems = []
    for ours, theirs in (("vocab_size", "vocab_size"), ("hidden_size", "hidden_size"),
                         ("num_hidden_layers", "num_hidden_layers"), ("num_attention_heads", "num_attention_heads"),
                         ("intermediate_size", "intermediate_size")):
        a, b = getattr(cfg, ours), getattr(src_cfg, theirs, None)
        if a != b:
            problems.append(f"{ours}: run {a} vs --init_from {b}")
    if src_cfg.model_type not in ("roberta", "bert"):
        problems.append(f"model_type {src_cfg.model_type!r}: --init_from takes a RoBERTa or BERT checkpoint")
    src_positions = src_cfg.max_position_embeddings - (2 if src_cfg.model_type == "roberta" else 0)
    if src_positions < seq_len:
        problems.append(f"--init_from supports {src_positions} positions, the run needs {seq_len}")
    if any(path.glob("tokenizer*.json")) or (path / "vocab.txt").exists():
        theirs = tokenizer_info(load_tokenizer(path), str(path))
        problems += [f"tokenizer {c}" for c in tok.conflicts(theirs)]
    if problems:
        raise ValueError("--init_from does not fit this run (shards / model flags):\n  " + "\n  ".join(problems))

    sd = _source_state_dict(path, src_cfg.model_type)
    if src_cfg.model_type == "bert":
        sd = _map_bert(sd, cfg.max_position_embeddings, cfg.pad_token_id)
    elif sd["roberta.embeddings.position_embeddings.weight"].shape[0] != cfg.max_position_embeddings:
        pos = sd["roberta.embeddings.position_embeddings.weight"]
        grown = model.roberta.embeddings.position_embeddings.weight.detach().clone()
        n = min(pos.shape[0], grown.shape[0])
        grown[:n] = pos[:n]
        sd["roberta.embeddings.position_embeddings.weight"] = grown
    target = model.state_dict()
    loadable = {k: v for k, v in sd.items() if k in target and target[k].shape == v.shape}
    missing, _ = model.load_state_dict(loadable, strict=False)
    model.tie_weights()
    return {
        "source": str(path),
        "source_model_type": src_cfg.model_type,
        "loaded_tensors": len(loadable),
        "fresh_tensors": sorted(k for k in missing if k not in TIED),
        "dropped_tensors": sorted(k for k in sd if k not in loadable),
    }
