"""The model's home: every module that builds, reloads or converts the model goes through this package.

    settings.py    ModelConfig: preset, sizes, dropout, position init, attention kind, vocab padding (import-light:
                   the command line and --help are built from it without torch)
    attention.py   the attention kinds (sdpa, eager, flash_attention_2, flex_attention: one KINDS entry each), where each runs,
                   and what an export records so a reload uses it
    core.py        the Hugging Face config, building the model, the padded vocabulary (rows that never reach a
                   loss, an accuracy or a prediction, sliced off for an export), reloading a saved model,
                   SparseMaskedLM (the MLM loss on masked positions only)
    hf_adapter.py  Hugging Face checkpoints <-> ours: warm start, BERT <-> RoBERTa weights
    memory.py      per-device memory estimates (--estimate_memory)

Names from core.py are importable from here (``from roberta_ds.training.model import build_model``); they are
loaded on first use, so importing the settings stays light.
"""

from __future__ import annotations

from roberta_ds.training.model.attention import ATTENTION_KINDS  # noqa: F401
from roberta_ds.training.model.settings import POSITION_INITS, PRESETS, ModelConfig  # noqa: F401

TIED = {"lm_head.decoder.weight", "lm_head.decoder.bias"}
"""Tied to the word embeddings / lm_head.bias, so a consolidated state dict may omit them."""


def __getattr__(name: str):
    import importlib
    import importlib.util

    if name.startswith("__"):
        raise AttributeError(name)
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a submodule (attention, memory, ...): that
        return importlib.import_module(f"{__name__}.{name}")  # alone, not core's torch and transformers
    core = importlib.import_module("roberta_ds.training.model.core")
    try:
        return getattr(core, name)
    except AttributeError:
        raise AttributeError(f"module 'roberta_ds.training.model' has no attribute {name!r}") from None
