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

from data_tools.steps import DocumentFilter, FilterSet

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _share_problem(flag: str, v: float) -> list[str]:
    return [] if 0.0 <= v <= 1.0 else [f"--{flag} {v}: a share in [0, 1] (1 turns the filter off)"]


@dataclass(frozen=True)
class MinChars(DocumentFilter):
    reason = "too short"
    min_chars: int = 0
    """Quality filter: drop documents shorter than this many characters after normalisation (0: keep all)."""

    def problems(self) -> list[str]:
        return [f"--min_chars {self.min_chars}: must be >= 0 (0 keeps every length)"] if self.min_chars < 0 else []

    def drops(self, raw: str, text: str) -> bool:
        return len(text) < self.min_chars


@dataclass(frozen=True)
class MaxNonHan(DocumentFilter):
    reason = "mostly not Han"
    max_non_han: float = 1.0
    """Quality filter: drop documents whose non-space characters are more than this share not Han (1: keep all;
    0.7 drops English, code and navigation pages and keeps Chinese news with numbers and names)."""

    def problems(self) -> list[str]:
        return _share_problem("max_non_han", self.max_non_han)

    def drops(self, raw: str, text: str) -> bool:
        chars = len(text) - text.count(" ")
        return bool(chars) and 1.0 - len(_HAN.findall(text)) / chars > self.max_non_han


@dataclass(frozen=True)
class MaxRepeatedLines(DocumentFilter):
    reason = "repeated lines"
    max_repeated_lines: float = 1.0
    """Quality filter: drop documents in which more than this share of the lines repeat an earlier line (Gopher
    uses 0.3; 1: keep all)."""

    def problems(self) -> list[str]:
        return _share_problem("max_repeated_lines", self.max_repeated_lines)

    def drops(self, raw: str, text: str) -> bool:
        return repeated_share(raw.splitlines()) > self.max_repeated_lines


@dataclass(frozen=True)
class MaxRepeatedParagraphs(DocumentFilter):
    reason = "repeated paragraphs"
    max_repeated_paragraphs: float = 1.0
    """Quality filter: the same for paragraphs, blocks between blank lines (Gopher uses 0.3; 1: keep all)."""

    def problems(self) -> list[str]:
        return _share_problem("max_repeated_paragraphs", self.max_repeated_paragraphs)

    def drops(self, raw: str, text: str) -> bool:
        return repeated_share(_PARAGRAPH_BREAK.split(raw)) > self.max_repeated_paragraphs


@dataclass(frozen=True)
class MaxChars(DocumentFilter):
    reason = "too long"
    max_chars: int = 0
    """Quality filter: drop documents longer than this many characters after normalisation: concatenated pages,
    tables and dumps (Gopher drops documents over 100,000 words; 0: keep all)."""

    def problems(self) -> list[str]:
        return [f"--max_chars {self.max_chars}: must be >= 0 (0 keeps every length)"] if self.max_chars < 0 else []

    def drops(self, raw: str, text: str) -> bool:
        return len(text) > self.max_chars


@dataclass(frozen=True)
class QualityFilters(FilterSet):
    """The quality filters of a pack (and of `data_tools near-dups`, which must see the documents the pack keeps), in
    the order they run: a document dropped by one is counted under that one's reason only."""

    too_short: MinChars = MinChars()
    mostly_not_han: MaxNonHan = MaxNonHan()
    repeated_lines: MaxRepeatedLines = MaxRepeatedLines()
    repeated_paragraphs: MaxRepeatedParagraphs = MaxRepeatedParagraphs()
    too_long: MaxChars = MaxChars()


REASONS = QualityFilters().reasons


def comparable(options: dict) -> dict:
    """Recorded options with their quality filters' settings completed by the defaults: a pack, a resume state or a
    drop list recorded before a filter existed (without its setting) compares equal to one with that filter off."""
    q = options.get("quality")
    return {**options, "quality": {**QualityFilters().settings(), **q}} if isinstance(q, dict) else options


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
