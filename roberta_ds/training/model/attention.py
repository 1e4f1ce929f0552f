"""The attention kinds: transformers' implementations for BERT-family models, chosen with --attention. Each kind
is one entry of KINDS, with where it runs; --attention's choices, the checks before a run, the reload and what an
export records all come from that table (adding a kind is adding an entry).

A run records its kind in the checkpoint's config, and an export in its config.json: sdpa and eager as
``attn_implementation``, which stock transformers (4.x and 5.x) reads, so a colleague's reload uses the same kind;
flash_attention_2 and flex_attention as ``roberta_ds_attention`` beside ``attn_implementation: sdpa``, since a
stock reload on a machine without CUDA or flash-attn would fail on them. Our own reloads (evaluate, probe) use the
recorded kind where it can run, sdpa otherwise (``reload_kind``).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

RECORD_KEY = "roberta_ds_attention"


@dataclass(frozen=True)
class Kind:
    name: str
    """transformers' attn_implementation."""
    about: str
    portable: bool = False
    """Runs on every device and dtype, so stock transformers reloads an export recording it anywhere."""
    cuda_only: bool = False
    package: str | None = None
    """A module that must be importable, and how to install it."""
    install: str = ""
    half_only: bool = False
    """Needs bf16 or fp16."""


KINDS = {k.name: k for k in (
    Kind("sdpa", "torch.nn.functional.scaled_dot_product_attention: fused kernels (flash / memory-efficient on "
         "CUDA), every device and dtype; the default", portable=True),
    Kind("eager", "plain matmul + softmax: for debugging and for comparison; every device", portable=True),
    Kind("flash_attention_2", "the flash-attn package's kernels: CUDA, bf16/fp16, the package installed",
         cuda_only=True, package="flash_attn", half_only=True,
         install="pip install flash-attn --no-build-isolation (or use sdpa, whose CUDA kernels include a flash "
                 "attention)"),
    Kind("flex_attention", "torch's flex attention (compiled): CUDA", cuda_only=True),
)}
ATTENTION_KINDS = tuple(KINDS)
PORTABLE = tuple(k.name for k in KINDS.values() if k.portable)


def unknown(kind: str) -> list[str]:
    """``kind`` as a problem when it is no kind of KINDS (ModelConfig's check and ``problems``)."""
    return [] if kind in KINDS else [f"--attention {kind!r}: choose one of {list(ATTENTION_KINDS)}"]


def problems(kind: str, device_type: str, dtype_name: str) -> list[str]:
    """Why ``kind`` cannot run on this device and dtype (empty: it can), each with what to do."""
    if kind not in KINDS:
        return unknown(kind)
    k, out = KINDS[kind], []
    if k.cuda_only and device_type != "cuda":
        out.append(f"--attention {kind} runs on CUDA GPUs only (this run is on {device_type}): use sdpa")
    if k.package and importlib.util.find_spec(k.package) is None:
        out.append(f"--attention {kind} needs the {k.package.replace('_', '-')} package: {k.install}")
    if k.half_only and dtype_name not in ("bf16", "fp16"):
        out.append(f"--attention {kind} needs bf16 or fp16 (bf16.enabled or fp16.enabled in the DeepSpeed config); "
                   f"this run is {dtype_name}")
    return out


def runnable(kind: str) -> bool:
    """Whether a reload for evaluation (fp32 or bf16, whatever device is there) can use ``kind`` here."""
    k = KINDS.get(kind)
    if k is None:
        return False
    if k.cuda_only:
        try:
            import torch
        except ImportError:
            return False
        if not torch.cuda.is_available():
            return False
    return k.package is None or importlib.util.find_spec(k.package) is not None


def reload_kind(config) -> str:
    """The kind a saved model records (``roberta_ds_attention``, else ``attn_implementation``), where it runs here;
    sdpa otherwise."""
    kind = trained_kind(config)
    return kind if runnable(kind) else "sdpa"


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


def config_dict(config) -> dict:
    """A Hugging Face config as a dict carrying the kind it was built (or recorded) with."""
    return recorded(config.to_dict(), trained_kind(config))


def record(model_dir: Path, kind: str) -> None:
    """Write ``kind`` into a saved model's config.json."""
    path = Path(model_dir) / "config.json"
    config = recorded(json.loads(path.read_text(encoding="utf-8")), kind)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
