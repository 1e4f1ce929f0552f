"""The attention kinds: transformers' implementations for BERT-family models, chosen with --attention.

    sdpa               torch.nn.functional.scaled_dot_product_attention: fused kernels (flash / memory-efficient on
                       CUDA), every device and dtype; the default
    eager              plain matmul + softmax: for debugging and for comparison; every device
    flash_attention_2  the flash-attn package's kernels: CUDA, bf16/fp16, the package installed
    flex_attention     torch's flex attention (compiled): CUDA

A run records its kind in the checkpoint's config, and an export in its config.json: sdpa and eager as
``attn_implementation``, which stock transformers (4.x and 5.x) reads, so a colleague's reload uses the same kind;
flash_attention_2 and flex_attention as ``roberta_ds_attention`` beside ``attn_implementation: sdpa``, since a
stock reload on a machine without CUDA or flash-attn would fail on them. Our own reloads (evaluate, probe) use the
recorded kind where it can run, sdpa otherwise (``reload_kind``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from roberta_ds.training.model.settings import ATTENTION_KINDS

PORTABLE = ("sdpa", "eager")
RECORD_KEY = "roberta_ds_attention"


def problems(kind: str, device_type: str, dtype_name: str) -> list[str]:
    """Why ``kind`` cannot run on this device and dtype (empty: it can), each with what to do."""
    if kind not in ATTENTION_KINDS:
        return [f"--attention {kind!r}: choose one of {list(ATTENTION_KINDS)}"]
    out = []
    if kind in ("flash_attention_2", "flex_attention") and device_type != "cuda":
        out.append(f"--attention {kind} runs on CUDA GPUs only (this run is on {device_type}): use sdpa")
    if kind == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            out.append("--attention flash_attention_2 needs the flash-attn package: pip install flash-attn "
                       "--no-build-isolation (or use sdpa, whose CUDA kernels include a flash attention)")
        if dtype_name not in ("bf16", "fp16"):
            out.append("--attention flash_attention_2 needs bf16 or fp16 (bf16.enabled or fp16.enabled in the "
                       "DeepSpeed config); this run is fp32")
    return out


def runnable(kind: str) -> bool:
    """Whether a reload for evaluation (fp32 or bf16, whatever device is there) can use ``kind`` here."""
    if kind in PORTABLE:
        return True
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and (kind != "flash_attention_2" or importlib.util.find_spec("flash_attn") is not None)


def reload_kind(config) -> str:
    """The kind a saved model records (``roberta_ds_attention``, else ``attn_implementation``), where it runs here;
    sdpa otherwise."""
    kind = trained_kind(config)
    return kind if kind in ATTENTION_KINDS and runnable(kind) else "sdpa"


def trained_kind(config) -> str:
    """The kind a model was built (or recorded) with."""
    return getattr(config, RECORD_KEY, None) or getattr(config, "_attn_implementation", None) or "sdpa"


def recorded(config: dict, kind: str) -> dict:
    """A config dict carrying ``kind`` (to_dict and save_pretrained leave the attention kind out)."""
    out = {k: v for k, v in config.items() if k != RECORD_KEY}
    out["attn_implementation"] = kind if kind in PORTABLE else "sdpa"
    if kind not in PORTABLE:
        out[RECORD_KEY] = kind
    return out


def record(model_dir: Path, kind: str) -> None:
    """Write ``kind`` into a saved model's config.json."""
    path = Path(model_dir) / "config.json"
    config = recorded(json.loads(path.read_text(encoding="utf-8")), kind)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
