"""Hugging Face checkpoints <-> our model, in one place: warm start from a RoBERTa or BERT-architecture checkpoint
(``init_from_pretrained``), and BERT-architecture weights <-> ours (``bert_to_roberta``, ``roberta_to_bert``) for
the warm start and for ``export --architecture bert``.

BERT-architecture weights <-> ours (RobertaForMaskedLM): the one place that maps the names and the positions.

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

Warm start: hfl's chinese-roberta-wwm-ext ships no MLM head; its BERT weights are mapped as above onto
RobertaForMaskedLM, every token-type row kept (the run's model gets the source's number of token types).
Tensors the source lacks (e.g. the MLM head) keep their fresh initialisation and are reported.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, RobertaForMaskedLM

from roberta_ds.tokenizer import TokenizerInfo, load_tokenizer, tokenizer_info
from roberta_ds.training.model import TIED
from roberta_ds.training.model.core import real_vocab_size

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
        if ours == "vocab_size":  # the tokenizer's rows: a padded run (--vocab_multiple) takes an unpadded source
            a, b = real_vocab_size(cfg), real_vocab_size(src_cfg)
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
    for k in ("roberta.embeddings.word_embeddings.weight", "lm_head.bias"):  # into a padded vocabulary: the
        if k in sd and k in target and sd[k].shape[0] < target[k].shape[0]:  # tokenizer's rows, padding kept fresh
            grown = target[k].detach().clone()
            grown[: sd[k].shape[0]] = sd[k]
            sd[k] = grown
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
