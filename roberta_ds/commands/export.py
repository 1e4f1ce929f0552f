"""Export any saved checkpoint to a Hugging Face model directory.

    python launcher/export.py RUN/checkpoints/global_step500 OUT_DIR
    python launcher/export.py RUN/checkpoints OUT_DIR        # the newest checkpoint

The work lives in roberta_ds/training/engine/checkpoint.py (export_checkpoint).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from roberta_ds import cli_args
from roberta_ds.commands import prog
from roberta_ds.cli_args import cli


@dataclass
class ExportCommand:
    checkpoint: str = field(metadata=cli(positional=True))
    """A global_stepN checkpoint directory, or a checkpoints/ directory (its newest checkpoint is used)."""
    out: str = field(metadata=cli(positional=True))
    """Output directory for the Hugging Face model (save_pretrained weights, config and tokenizer)."""
    architecture: str = "roberta"
    """roberta (RobertaForMaskedLM, what the run trained), or bert: a BertForMaskedLM drop-in for code written for
    hfl's BERT-architecture checkpoints (BertModel, BertForSequenceClassification); the same predictions."""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"--architecture {self.architecture!r}: choose one of {', '.join(ARCHITECTURES)}")


ARCHITECTURES = ("roberta", "bert")


def main(argv: list[str] | None = None) -> int:
    try:
        args = cli_args.parse(ExportCommand, argv, prog("export"),
                              "Export a DeepSpeed checkpoint (any ZeRO stage) to a Hugging Face model directory.")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # After parsing: --help and a bad flag answer without importing torch and DeepSpeed (seconds).
    from roberta_ds.training.engine.checkpoint import export_checkpoint, find
    from roberta_ds.reports.model_card import write_checkpoint_model_card

    try:
        out = export_checkpoint(args.checkpoint, args.out, architecture=args.architecture)
        card = write_checkpoint_model_card(find(args.checkpoint), out)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported {args.checkpoint} -> {out} (model card: {card})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
