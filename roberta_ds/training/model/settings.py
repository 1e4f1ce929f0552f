"""The model's architecture settings (presets and overrides), apart from the model so that the command line and
--help are built without importing torch and transformers (roberta_ds/training/config.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from roberta_ds.cli_args import cli
from roberta_ds.training.model import attention
from roberta_ds.training.model.attention import ATTENTION_KINDS

# hidden, layers, heads, intermediate. base = the original run (docs/design.md).
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
    "small": dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}


POSITION_INITS = ("random", "sinusoid")


@dataclass
class ModelConfig:
    """Architecture: a preset plus the original script's override flags."""

    model_size: str = "base"
    """Architecture preset: tiny | small | base | large (base = the original run: hidden 768, 12 layers)."""
    hidden_size: int | None = None
    """Overrides the preset's hidden size."""
    num_heads: int | None = None
    """Overrides the preset's attention heads."""
    intermediate_size: int | None = None
    """Overrides the preset's feed-forward size."""
    num_hidden_layers: int | None = None
    """Overrides the preset's layer count."""
    dropout: float = 0.1
    """Hidden and attention dropout (0 for bitwise comparisons across world sizes)."""
    position_init: str = "random"
    """Initial learned position embeddings: random (BERT's normal, std 0.02) or sinusoid (Vaswani et al.'s table,
    scaled to the same std); the model stays a stock RobertaForMaskedLM either way."""
    attention: str = field(default="sdpa", metadata=cli(choices=ATTENTION_KINDS))
    """Attention implementation (model/attention.py: where each runs): sdpa, PyTorch's fused kernels, is the
    default; eager is for debugging. Recorded in the checkpoint and the export, so a reload uses it where it can
    run."""
    compile: bool = False
    """torch.compile the encoder (in place: checkpoints, resume and export are unchanged; the MLM head, whose row
    count varies with the masked tokens, stays eager). Off by default: the first steps pay the compilation, and the
    gain is measured per device (bench/gpu_check.py)."""
    vocab_multiple: int = 1
    """Pad the embedding and LM-head rows to a multiple of this (64 suits tensor cores: 21,128 -> 21,184). Padding
    rows never reach the loss, the accuracy or a prediction, and an export has the tokenizer's rows only. 1: none."""

    def __post_init__(self) -> None:
        problems = []
        if self.model_size not in PRESETS:
            problems.append(f"--model_size {self.model_size!r}: choose one of {sorted(PRESETS)}")
        for name in ("hidden_size", "num_heads", "intermediate_size", "num_hidden_layers"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                problems.append(f"--{name} {v}: must be a positive integer")
        if self.position_init not in POSITION_INITS:
            problems.append(f"--position_init {self.position_init!r}: choose one of {list(POSITION_INITS)}")
        problems += attention.unknown(self.attention)
        if self.vocab_multiple < 1:
            problems.append(f"--vocab_multiple {self.vocab_multiple}: a positive integer (1: no padding, 64 for "
                            "tensor cores)")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"--dropout {self.dropout}: must be in [0, 1)")
        if not problems:
            arch = self.architecture()
            if arch["hidden_size"] % arch["num_attention_heads"]:
                problems.append(
                    f"hidden size {arch['hidden_size']} is not divisible by {arch['num_attention_heads']} heads: "
                    "change --hidden_size or --num_heads"
                )
        if problems:
            raise ValueError("invalid model settings:\n  " + "\n  ".join(problems))

    def architecture(self) -> dict[str, int]:
        arch = dict(PRESETS[self.model_size])
        overrides = dict(
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
        )
        arch.update({k: v for k, v in overrides.items() if v is not None})
        return arch

    def to_dict(self) -> dict:
        return asdict(self)
