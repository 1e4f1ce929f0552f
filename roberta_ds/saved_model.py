"""A saved masked LM, loaded for evaluation or fine-tuning from either form a run leaves behind.

    RUN/final_model/                       a Hugging Face directory (``save_pretrained`` output)
    RUN/checkpoints/global_stepN/          a DeepSpeed checkpoint with hf_config.json and tokenizer/
    RUN/checkpoints/                       the newest complete checkpoint in it

A checkpoint is consolidated through ``checkpoint.fp32_state_dict`` (any ZeRO stage), so evaluating
a checkpoint and evaluating its export give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase, RobertaForMaskedLM

from roberta_ds import checkpoint
from roberta_ds.checkpoint import HF_CONFIG_NAME, STATE_NAME
from roberta_ds.shard_format import TOKENIZER_DIRNAME
from roberta_ds.tokenizer import POSITION_OFFSET, TokenizerInfo, load_tokenizer, tokenizer_info


@dataclass
class LoadedModel:
    mlm: RobertaForMaskedLM
    tokenizer: PreTrainedTokenizerBase
    path: Path
    """The directory the weights came from (for a checkpoints/ directory: the checkpoint chosen)."""
    kind: str
    """'hf' (a save_pretrained directory) or 'checkpoint' (DeepSpeed checkpoint)."""

    @property
    def max_seq_length(self) -> int:
        # RoBERTa positions start at pad_id + 1 (model.roberta_config docstring).
        return self.mlm.config.max_position_embeddings - POSITION_OFFSET

    def tokenizer_info(self) -> TokenizerInfo:
        return tokenizer_info(self.tokenizer, str(self.path))


def load_masked_lm(path: str | Path) -> LoadedModel:
    """A RobertaForMaskedLM in eval mode (fp32, CPU) plus its tokenizer; raises ValueError naming what is missing."""
    p = Path(path)
    if not p.is_dir():
        raise ValueError(f"--model {p}: no such directory (RUN/final_model or RUN/checkpoints/global_stepN)")
    if (p / "config.json").exists():
        mlm = RobertaForMaskedLM.from_pretrained(str(p))
        tokenizer = load_tokenizer(p)
        kind = "hf"
    else:
        tag_dir = checkpoint.find(p)
        if tag_dir is None:
            raise ValueError(
                f"--model {p}: neither a Hugging Face model directory (config.json) nor a checkpoint "
                f"(global_stepN with {STATE_NAME} and {HF_CONFIG_NAME}) nor a checkpoints/ directory holding one"
            )
        p, kind = tag_dir, "checkpoint"
        try:
            mlm = checkpoint.model_from_checkpoint(tag_dir)
        except (RuntimeError, OSError) as e:
            raise ValueError(str(e)) from e
        tokenizer = load_tokenizer(tag_dir / TOKENIZER_DIRNAME)
    mlm.float().eval()
    return LoadedModel(mlm=mlm, tokenizer=tokenizer, path=p, kind=kind)


def data_conflicts(model: LoadedModel, data: TokenizerInfo, seq_len: int) -> list[str]:
    """Every way the model cannot read these shards: tokenizer identity, embedding size, pad id, length."""
    problems = [f"tokenizer {c}" for c in model.tokenizer_info().conflicts(data)]
    cfg = model.mlm.config
    if cfg.vocab_size != data.vocab_size:
        problems.append(f"model vocab_size {cfg.vocab_size} ({model.path}/config) != shards' vocab_size {data.vocab_size}")
    if cfg.pad_token_id != data.pad_id:
        problems.append(f"model pad_token_id {cfg.pad_token_id} != shards' pad_id {data.pad_id}")
    if seq_len > model.max_seq_length:
        problems.append(f"sequence length {seq_len} > the model's {model.max_seq_length} positions: pass --max_seq_length "
                        f"{model.max_seq_length} or smaller")
    return problems
