"""Dynamic masking (RoBERTa) and whole-word masking, deterministic per (seed, epoch, sample key).

Each sequence gets its own random stream derived from (seed, epoch, key), so the masks
depend neither on world size, micro batch, loader workers nor on where a run resumed:
a resumed run and an uninterrupted one see exactly the same masks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from roberta_ds.tokenizer import TokenizerInfo

IGNORE_INDEX = -100
"""Label of unmasked positions: PyTorch's cross_entropy ignore_index, and what HF models expect."""

EVAL_MASK_SEED = 20240915
"""Held-out evaluation always masks with this seed at 15 %, so numbers from different runs compare."""


MASK_PROB = 0.15
"""BERT's and RoBERTa's masking rate: the training default and the held-out evaluation's fixed rate."""


@dataclass(frozen=True)
class MaskingConfig:
    """How tokens are chosen and corrupted for the masked-LM objective."""

    mask_prob: float = MASK_PROB
    """Fraction of maskable (non-special) tokens, or of words with --wwm, selected for prediction."""
    replace_mask: float = 0.8
    """Of the selected tokens: fraction replaced by [MASK]."""
    replace_random: float = 0.1
    """Of the selected tokens: fraction replaced by a random non-special token (the rest stay unchanged)."""
    wwm: bool = False
    """Select whole jieba words (needs shards packed with --wwm)."""

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 < self.mask_prob < 1.0:
            problems.append(f"--mask_prob {self.mask_prob}: must be in (0, 1); RoBERTa uses {MASK_PROB}")
        if self.replace_mask < 0 or self.replace_random < 0 or self.replace_mask + self.replace_random > 1:
            problems.append("replace_mask + replace_random must lie in [0, 1]")
        if problems:
            raise ValueError("invalid masking settings:\n  " + "\n  ".join(problems))


EVAL_MASKING = MaskingConfig(mask_prob=MASK_PROB)
"""Held-out evaluation masking: token-level 15 %, 80/10/10, whatever the run trained with (with EVAL_MASK_SEED)."""


def sample_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}/{epoch}/{key}".encode(), digest_size=16).digest()
    return np.random.Generator(np.random.Philox(key=int.from_bytes(digest, "little")))


class Masker:
    def __init__(self, cfg: MaskingConfig, tok: TokenizerInfo) -> None:
        self.cfg = cfg
        self.tok = tok
        # [UNK] is never a target: predicting "unknown" teaches nothing.
        self.special = np.array(sorted({tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id, tok.unk_id}))
        keep = np.ones(tok.vocab_size, dtype=bool)
        keep[self.special] = False
        self.random_pool = np.flatnonzero(keep)

    def __call__(
        self, ids: np.ndarray, word_starts: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mask one sequence. Returns (corrupted input ids int64, labels int64 with IGNORE_INDEX elsewhere)."""
        ids = ids.astype(np.int64)
        maskable = ~np.isin(ids, self.special)
        if self.cfg.wwm:
            if word_starts is None:
                raise ValueError(
                    "--wwm needs word-start flags in the shards: re-run `python -m data_tools pack ... --wwm`"
                )
            # A word = a word-start token plus the following non-start tokens. Draw one number
            # per word and give it to all of its tokens, so a word is masked whole or not at all.
            word_id = np.cumsum(word_starts.astype(np.int64) | ~maskable)
            draw = rng.random(int(word_id[-1]) + 1)
            selected = (draw[word_id] < self.cfg.mask_prob) & maskable
        else:
            selected = (rng.random(ids.shape[0]) < self.cfg.mask_prob) & maskable
        labels = np.where(selected, ids, IGNORE_INDEX)
        action = rng.random(ids.shape[0])
        to_mask = selected & (action < self.cfg.replace_mask)
        to_random = selected & (action >= self.cfg.replace_mask) & (
            action < self.cfg.replace_mask + self.cfg.replace_random
        )
        out = ids.copy()
        out[to_mask] = self.tok.mask_id
        out[to_random] = rng.choice(self.random_pool, size=int(to_random.sum()))
        return out, labels
