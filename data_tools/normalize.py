"""Text normalisation applied to every document before dedup, hashing and tokenization.

Two steps:
  1. Character table (on by default, ``--no_normalize`` turns it off): the standard Chinese
     BERT vocab (hfl/chinese-bert-wwm-ext, 21,128 ids) has no curly quotes, em/en dash or
     ellipsis, so on the inews corpus they alone make ~1 % of all tokens [UNK]. Each maps to an
     equivalent that *is* in that vocab (checked against chinese-bert-vocab.txt: ``"`` ``'``
     ``-`` and ``.`` are single-character ids). The ellipsis becomes ``...`` (BERT's punctuation
     split makes that three ``.`` ids), because the vocab's ``...`` token is unreachable after that
     split anyway.
  2. Whitespace (always on): runs of whitespace (incl. U+3000 ideographic space and NBSP)
     become one ASCII space and the ends are stripped. BERT's tokenizer treats all of these as
     separators, so this changes no token id; it makes duplicates that differ only in
     indentation hash equal.
"""

from __future__ import annotations

import re

from roberta_ds.tokenizer import CHAR_TABLE  # noqa: E402  (the one table; the exported tokenizer carries it too)

_TRANSLATE = str.maketrans(CHAR_TABLE)
_TABLE_RE = re.compile("[" + "".join(CHAR_TABLE) + "]")
_WS_RE = re.compile(r"\s+")


def normalize(text: str, table: bool = True) -> tuple[str, int]:
    """Return (normalised text, number of characters replaced by the table)."""
    replaced = 0
    if table:
        replaced = len(_TABLE_RE.findall(text))
        if replaced:
            text = text.translate(_TRANSLATE)
    return _WS_RE.sub(" ", text).strip(), replaced
