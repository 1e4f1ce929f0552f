"""Export any saved checkpoint to a Hugging Face model directory.

    python -m roberta_ds.export RUN/checkpoints/global_step500 OUT_DIR
    python -m roberta_ds.export RUN/checkpoints OUT_DIR        # the newest checkpoint

The fp32 weights are consolidated from DeepSpeed's ZeRO shards (any stage), loaded into a
fresh RobertaForMaskedLM and saved with ``save_pretrained``. We do not use
``zero_to_fp32.py --safe_serialization``: it fails on RoBERTa's tied decoder weights
(DESIGN.md), while ``save_pretrained`` knows the tie.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, RobertaConfig, RobertaForMaskedLM

from roberta_ds.checkpoint import HF_CONFIG_NAME, TOKENIZER_DIR, resolve_resume

WRAPPER_PREFIX = "mlm."  # SparseMaskedLM keeps the HF model as .mlm


def fp32_state_dict(tag_dir: Path) -> dict[str, torch.Tensor]:
    # ZeRO keeps the fp32 master weights in the optimizer shards ("zero_pp_rank_*" or, with bf16,
    # "bf16_zero_pp_rank_*"); mp_rank_*_model_states.pt holds the module in its training dtype (bf16/fp16).
    if any(tag_dir.glob("*_optim_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        # zero_to_fp32 logs every parameter at INFO; keep the export readable.
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        sd = get_fp32_state_dict_from_zero_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
    else:  # no ZeRO partitioning: DeepSpeed keeps the whole module in one file
        files = sorted(tag_dir.glob("mp_rank_*_model_states.pt"))
        if not files:
            raise FileNotFoundError(f"{tag_dir}: no DeepSpeed model states found")
        sd = torch.load(files[0], map_location="cpu", weights_only=False)["module"]
    return {k.removeprefix(WRAPPER_PREFIX): v.float() for k, v in sd.items()}


TIED = {"lm_head.decoder.weight", "lm_head.decoder.bias"}
"""Tied to the word embeddings / lm_head.bias, so a consolidated state dict may omit them."""


def model_from_checkpoint(tag_dir: Path) -> RobertaForMaskedLM:
    """A RobertaForMaskedLM with a checkpoint's consolidated fp32 weights (any ZeRO stage), decoder tied."""
    config = RobertaConfig.from_json_file(str(tag_dir / HF_CONFIG_NAME))
    model = RobertaForMaskedLM(config)
    missing, unexpected = model.load_state_dict(fp32_state_dict(tag_dir), strict=False)
    model.tie_weights()
    bad_missing = [k for k in missing if k not in TIED]
    if bad_missing or unexpected:
        raise RuntimeError(f"checkpoint {tag_dir} does not match its config: missing {bad_missing}, unexpected {unexpected}")
    if model.lm_head.decoder.weight.data_ptr() != model.roberta.embeddings.word_embeddings.weight.data_ptr():
        raise RuntimeError("decoder weight is not tied to the word embeddings after loading")
    return model


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> Path:
    tag_dir = resolve_resume(str(checkpoint), Path(checkpoint))
    out = Path(out)
    model = model_from_checkpoint(tag_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(tag_dir / TOKENIZER_DIR)).save_pretrained(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m roberta_ds.export", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a global_stepN checkpoint directory, or a checkpoints/ directory (newest is used)")
    p.add_argument("out", help="output directory for the Hugging Face model")
    args = p.parse_args(argv)
    try:
        out = export_checkpoint(args.checkpoint, args.out)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported {args.checkpoint} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
