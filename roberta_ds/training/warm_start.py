"""Continue pretraining from a Hugging Face checkpoint: RoBERTa, or BERT-architecture.

hfl's chinese-roberta-wwm-ext is BERT-architecture and ships no MLM head, so BERT weights
are mapped onto RobertaForMaskedLM:
  * ``bert.*`` -> ``roberta.*`` (same layer names otherwise);
  * position embeddings shift by one row: RoBERTa numbers positions from pad_id + 1, so
    token i uses row i + 1 (with pad 0), where BERT used row i;
  * ``cls.predictions.transform.dense / LayerNorm / decoder / bias`` -> ``lm_head.dense / layer_norm / decoder / bias``;
  * token-type embeddings: every row (the run's model gets the source's number of token types).
Tensors the source lacks (e.g. the MLM head) keep their fresh initialisation and are reported.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, RobertaForMaskedLM

from roberta_ds.training.bert_format import bert_to_roberta
from roberta_ds.training.checkpoint import TIED
from roberta_ds.tokenizer import TokenizerInfo, load_tokenizer, tokenizer_info

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


def resolve_source(source: str) -> Path:
    """A local model directory for ``source``: the directory itself, or a hub id's snapshot (downloaded once into
    the Hugging Face cache; offline, the cached copy or an error saying how to bring one)."""
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "pytorch_model.bin", "vocab.txt", "*.txt", "*.model"]
    try:
        return Path(snapshot_download(source, allow_patterns=patterns))
    except LocalEntryNotFoundError as e:
        raise ValueError(
            f"--init_from {source}: not a local directory, and the hub cannot be reached from here (offline, or "
            f"HF_HUB_OFFLINE=1) with no cached copy. On a machine with network: `huggingface-cli download {source} "
            f"--local-dir DIR`, copy DIR here and pass --init_from DIR") from e
    except Exception as e:  # noqa: BLE001 - unknown repo, gated model, network error: say which, with the fix
        raise ValueError(f"--init_from {source}: could not download it from the hub ({type(e).__name__}: {e}); "
                         "check the id, or download it elsewhere and pass the directory") from e


def source_token_types(source: str) -> int:
    """How many token types (segment rows) the --init_from checkpoint has: the run's model gets as many, so that
    every tensor of the source is kept (hfl's BERT-architecture checkpoints have 2)."""
    return int(getattr(AutoConfig.from_pretrained(str(resolve_source(source))), "type_vocab_size", 1) or 1)


def init_from_pretrained(model: RobertaForMaskedLM, path: str, tok: TokenizerInfo, seq_len: int) -> dict:
    """Load weights into ``model`` in place; return what was loaded, initialised fresh, and dropped. ``path`` is a
    model directory or a hub id (downloaded with huggingface_hub into its cache)."""
    path = resolve_source(path)
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
        sd = bert_to_roberta(sd, cfg.max_position_embeddings, cfg.pad_token_id)
    elif sd["roberta.embeddings.position_embeddings.weight"].shape[0] != cfg.max_position_embeddings:
        pos = sd["roberta.embeddings.position_embeddings.weight"]
        grown = model.roberta.embeddings.position_embeddings.weight.detach().clone()
        n = min(pos.shape[0], grown.shape[0])
        grown[:n] = pos[:n]
        sd["roberta.embeddings.position_embeddings.weight"] = grown
    target = model.state_dict()
    partial = {}
    tt = "roberta.embeddings.token_type_embeddings.weight"
    if tt in sd and tt in target and sd[tt].shape[0] > target[tt].shape[0]:
        # a model built with fewer token types than its source (not by build_run, which matches the source)
        partial[tt] = f"rows {target[tt].shape[0]}..{sd[tt].shape[0] - 1} dropped: the model has {target[tt].shape[0]} token type(s)"
        sd[tt] = sd[tt][: target[tt].shape[0]]
    loadable = {k: v for k, v in sd.items() if k in target and target[k].shape == v.shape}
    missing, _ = model.load_state_dict(loadable, strict=False)
    model.tie_weights()
    return {
        "source": str(path),
        "source_model_type": src_cfg.model_type,
        "loaded_tensors": len(loadable),
        "fresh_tensors": sorted(k for k in missing if k not in TIED),
        "dropped_tensors": sorted(k for k in sd if k not in loadable),
        "partly_loaded": partial,
    }
