"""Quality filters for crawled news text, each a `data_tools pack` flag, each counted in the manifest by reason with
examples. Modelled on Gopher's repetition and C4's length rules (Rae et al. 2021, Raffel et al. 2020; datatrove's
GopherRepetitionFilter / C4QualityFilter), adapted to Chinese: length is counted in characters (a Chinese word is
one to four of them, no spaces), and a page that is mostly not Han characters is navigation, code or another
language.

Off by default: a pack keeps every document it is given unless told otherwise, so an existing command packs the
same bytes. README ("Quality filters") gives the values for a crawl and what each drops of inews and of a
THUCNews tree.

Lines are counted on the raw text (normalisation joins them): a line is a paragraph in THUCNews and inews; a
paragraph in a crawl's plain text is a block between blank lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REASONS = ("too short", "mostly not Han", "repeated lines", "repeated paragraphs")

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class QualityFilters:
    """The quality filters of a pack (and of `data_tools near-dups`, which must see the documents the pack keeps)."""

    min_chars: int = 0
    """Quality filter: drop documents shorter than this many characters after normalisation (0: keep all)."""
    max_non_han: float = 1.0
    """Quality filter: drop documents whose non-space characters are more than this share not Han (1: keep all;
    0.7 drops English, code and navigation pages and keeps Chinese news with numbers and names)."""
    max_repeated_lines: float = 1.0
    """Quality filter: drop documents in which more than this share of the lines repeat an earlier line (Gopher
    uses 0.3; 1: keep all)."""
    max_repeated_paragraphs: float = 1.0
    """Quality filter: the same for paragraphs, blocks between blank lines (Gopher uses 0.3; 1: keep all)."""

    @property
    def active(self) -> bool:
        return self != QualityFilters()

    def problems(self) -> list[str]:
        out = []
        if self.min_chars < 0:
            out.append(f"--min_chars {self.min_chars}: must be >= 0 (0 keeps every length)")
        for name in ("max_non_han", "max_repeated_lines", "max_repeated_paragraphs"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                out.append(f"--{name} {v}: a share in [0, 1] (1 turns the filter off)")
        return out

    def verdict(self, raw: str, text: str) -> str | None:
        """The first filter (REASONS) the document fails, or None. ``raw``: as read; ``text``: normalised."""
        if self.min_chars and len(text) < self.min_chars:
            return REASONS[0]
        if self.max_non_han < 1.0:
            chars = len(text) - text.count(" ")
            if chars and 1.0 - len(_HAN.findall(text)) / chars > self.max_non_han:
                return REASONS[1]
        if self.max_repeated_lines < 1.0 and repeated_share(raw.splitlines()) > self.max_repeated_lines:
            return REASONS[2]
        if self.max_repeated_paragraphs < 1.0 and repeated_share(_PARAGRAPH_BREAK.split(raw)) > self.max_repeated_paragraphs:
            return REASONS[3]
        return None


def repeated_share(pieces: list[str]) -> float:
    """Share of the non-empty pieces (whitespace-stripped) that repeat an earlier piece: Gopher's duplicate-line
    fraction (0 for a document with no repeats; 0.5 for one line printed twice)."""
    seen, kept, repeats = set(), 0, 0
    for p in pieces:
        p = " ".join(p.split())
        if not p:
            continue
        kept += 1
        if p in seen:
            repeats += 1
        seen.add(p)
    return repeats / kept if kept else 0.0
