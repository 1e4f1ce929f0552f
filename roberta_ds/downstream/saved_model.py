"""A saved masked LM, loaded for evaluation or fine-tuning from either form a run leaves behind, and its held-out
metrics (``evaluate_saved``, behind launcher/evaluate.py).

    RUN/final_model/                       a Hugging Face directory (``save_pretrained`` output)
    RUN/checkpoints/global_stepN/          a DeepSpeed checkpoint with hf_config.json and tokenizer/
    RUN/checkpoints/                       the newest complete checkpoint in it

A checkpoint is consolidated through ``checkpoint.fp32_state_dict`` (any ZeRO stage), so evaluating
a checkpoint and evaluating its export give the same numbers.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase, RobertaForMaskedLM

from roberta_ds.training.engine import checkpoint
from roberta_ds.training.engine.checkpoint import HF_CONFIG_NAME, STATE_NAME
from roberta_ds.training.model.core import load_mlm
from roberta_ds.reading.data import Layout, ShardStream
from roberta_ds.reading.masking import EVAL_MASK_SEED
from roberta_ds.shard_format import TOKENIZER_DIRNAME, read_manifest
from roberta_ds.tokenizer import POSITION_OFFSET, TokenizerInfo, load_tokenizer, tokenizer_info
from roberta_ds.downstream.eval_config import EvalConfig  # noqa: F401 (re-exported)


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
        mlm = load_mlm(p)
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


# ---------------------------------------------------------------------------- held-out metrics of a saved model
def evaluate_saved(cfg: EvalConfig) -> dict:
    """Held-out metrics of a saved model on every rank; the result is all-reduced (identical on every rank).

    The numbers are those of ``evaluate`` at its fixed masking and seed, the function the trainer calls,
    so evaluating a run's final model reproduces the run's last eval record (same split, same
    max_sequences). Under the `deepspeed` launcher each rank evaluates its share of every round of
    micro-batches.
    """
    from roberta_ds.training.engine.setup import device, init_distributed  # imports deepspeed
    from roberta_ds.training.observe.evaluation import evaluate
    from roberta_ds.training.model import SparseMaskedLM

    root = Path(cfg.data_dir)
    manifest = read_manifest(root)
    loaded = load_masked_lm(cfg.model)
    seq_len = cfg.max_seq_length or min(manifest.max_seq_length, loaded.max_seq_length)
    problems = data_conflicts(loaded, manifest.tokenizer, seq_len)
    if problems:
        raise ValueError(f"model {loaded.path} cannot be evaluated on {root}:\n  " + "\n  ".join(problems)
                         + "\nEvaluate on shards packed with the model's tokenizer "
                           f"(`python -m data_tools pack --tokenizer_path {loaded.path}`).")
    # Checked before joining the process group: a mismatch fails fast, on every rank alike.
    rank, world, _ = init_distributed()
    dev = device()
    stream = ShardStream(root, manifest, cfg.split, seq_len, EVAL_MASK_SEED, shuffle=False)
    layout = Layout(micro_batch=cfg.micro_batch, grad_accum=1, world_size=world, rank=rank)
    model = SparseMaskedLM(loaded.mlm).to(dev).eval()
    t0 = time.perf_counter()
    res = evaluate(model, stream, layout, cfg.max_sequences, dev)
    return {
        "model": str(loaded.path), "model_kind": loaded.kind, "data_dir": str(root.resolve()), "split": cfg.split,
        "seq_len": seq_len, "max_sequences": cfg.max_sequences, "world_size": world, "micro_batch": cfg.micro_batch,
        "mask_seed": EVAL_MASK_SEED, **res, "eval_time_s": time.perf_counter() - t0,
        "settings": asdict(cfg),
    }

