"""Dynamic and whole-word masking: rates, special tokens, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from roberta_ds.reading.masking import IGNORE_INDEX, Masker, MaskingConfig, sample_rng
from roberta_ds.tokenizer import TokenizerInfo

TOK = TokenizerInfo(name="t", vocab_size=1000, vocab_sha256="x", pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4)


def _seq(rng: np.random.Generator, n: int = 512) -> np.ndarray:
    ids = rng.integers(5, TOK.vocab_size, size=n)
    ids[0] = TOK.cls_id
    ids[rng.choice(np.arange(1, n), 20, replace=False)] = TOK.sep_id
    ids[rng.choice(np.arange(1, n), 5, replace=False)] = TOK.unk_id
    return ids.astype(np.uint16)


def test_rates_and_special_tokens_never_masked():
    masker = Masker(MaskingConfig(), TOK)
    rng = np.random.default_rng(0)
    selected = candidates = masked = randomised = kept = 0
    for i in range(200):
        ids = _seq(rng)
        out, labels = masker(ids, None, sample_rng(1, 0, f"k{i}"))
        special = np.isin(ids, [TOK.pad_id, TOK.cls_id, TOK.sep_id, TOK.unk_id])
        sel = labels != IGNORE_INDEX
        assert not (sel & special).any(), "a special token was selected for prediction"
        assert (out[special] == ids[special]).all(), "a special token was corrupted"
        assert (labels[sel] == ids[sel]).all(), "labels must be the original tokens"
        assert (out[~sel] == ids[~sel]).all(), "unselected tokens must stay unchanged"
        candidates += int((~special).sum())
        selected += int(sel.sum())
        masked += int((out[sel] == TOK.mask_id).sum())
        kept += int((out[sel] == ids[sel]).sum())
        randomised += int(((out[sel] != TOK.mask_id) & (out[sel] != ids[sel])).sum())
    assert selected / candidates == pytest.approx(0.15, abs=0.005)
    assert masked / selected == pytest.approx(0.8, abs=0.01)
    assert randomised / selected == pytest.approx(0.1, abs=0.01)
    # A random replacement can draw the original token back (1 in ~1000), so "kept" is a hair above 10 %.
    assert kept / selected == pytest.approx(0.1, abs=0.01)


def test_masks_are_deterministic_per_seed_epoch_and_key():
    masker = Masker(MaskingConfig(), TOK)
    ids = _seq(np.random.default_rng(3))
    a = masker(ids, None, sample_rng(42, 0, "shard/0/1/0"))
    b = masker(ids, None, sample_rng(42, 0, "shard/0/1/0"))
    c = masker(ids, None, sample_rng(42, 1, "shard/0/1/0"))
    d = masker(ids, None, sample_rng(42, 0, "shard/0/2/0"))
    assert all((x == y).all() for x, y in zip(a, b))
    assert not (a[1] == c[1]).all(), "a new epoch must draw new masks (dynamic masking)"
    assert not (a[1] == d[1]).all(), "different samples must get different masks"


def test_whole_word_masking_masks_words_whole():
    masker = Masker(MaskingConfig(wwm=True), TOK)
    rng = np.random.default_rng(5)
    n_sel = n_cand = 0
    for i in range(100):
        ids = _seq(rng)
        starts = rng.random(ids.shape[0]) < 0.5  # words of 1-several tokens
        starts[0] = True
        _, labels = masker(ids, starts, sample_rng(7, 0, f"w{i}"))
        sel = labels != IGNORE_INDEX
        special = np.isin(ids, list(masker.special))
        word = np.cumsum(starts | special)
        for w in np.unique(word[sel]):
            toks = (word == w) & ~special
            assert sel[toks].all(), f"word {w} only partly selected"
        n_sel += int(sel.sum())
        n_cand += int((~special).sum())
    assert n_sel / n_cand == pytest.approx(0.15, abs=0.02)


def test_wwm_without_word_starts_is_a_clear_error():
    with pytest.raises(ValueError, match="re-run `python -m data_tools pack .* --wwm`"):
        Masker(MaskingConfig(wwm=True), TOK)(_seq(np.random.default_rng(0)), None, sample_rng(0, 0, "k"))


def test_bad_mask_prob_names_the_flag():
    with pytest.raises(ValueError, match="--mask_prob 1.5"):
        MaskingConfig(mask_prob=1.5)
