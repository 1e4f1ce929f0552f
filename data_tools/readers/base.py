"""What every reader yields and counts: a Document, and the ReadStats of what it saw; and the protocol a format's
reader follows (data_tools.readers lists the readers)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from data_tools.readers import ReaderConfig

MAX_EXAMPLES = 5


@dataclass
class Document:
    text: str
    meta: dict = field(default_factory=dict)


@dataclass
class ReadStats:
    """What the reader saw; every field is a count of the named thing."""

    files_read: int = 0
    """Input files opened (1 for a single csv/jsonl/text file; 0 for inews)."""
    documents_read: int = 0
    """Documents yielded (before empty-drop and dedup)."""
    empty_files: int = 0
    """Files with no bytes (nothing read from them)."""
    binary_files_skipped: int = 0
    """Files with NUL bytes in their first 8 KiB: not text, skipped whole."""
    encodings: Counter = field(default_factory=Counter)
    """Files by the encoding that decoded them: utf-8, or gb18030 (GBK/GB2312 superset) as fallback."""
    decode_errors: int = 0
    """Lines/files neither utf-8 nor gb18030 could decode: decoded with U+FFFD replacements."""
    categories: Counter = field(default_factory=Counter)
    """thucnews: documents read per category (pack reports them with the kept counts)."""
    unreadable_rows: Counter = field(default_factory=Counter)
    """Rows skipped, by reason (bad_json, missing_field, bad_csv_row)."""
    examples: list[str] = field(default_factory=list)
    """The first few problems with their location, for the summary."""

    def problem(self, kind: str, where: str) -> None:
        self.unreadable_rows[kind] += 1
        self.note(f"{kind}: {where}")

    def note(self, msg: str) -> None:
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(msg)

    def to_dict(self) -> dict:
        """Every count but ``categories``, which pack joins with its kept counts per category."""
        return {
            "files_read": self.files_read,
            "documents_read": self.documents_read,
            "empty_files": self.empty_files,
            "binary_files_skipped": self.binary_files_skipped,
            "encodings": dict(sorted(self.encodings.items())),
            "decode_errors": self.decode_errors,
            "unreadable_rows": dict(sorted(self.unreadable_rows.items())),
            "unreadable_rows_total": sum(self.unreadable_rows.values()),
            "problem_examples": list(self.examples),
        }



class Reader:
    """One corpus format. A new format is a module with a subclass and its line in data_tools.readers.READERS; the
    command line's --format choices, the file-by-file sharing (``pack --part_by files``, datatrove's tasks) and the
    checks come from these attributes."""

    format: ClassVar[str]
    """The --format name."""
    suffixes: ClassVar[tuple[str, ...]] = ()
    """File suffixes read from an --input directory (also behind a compression suffix). Non-empty: the format is
    read file by file (one file's documents do not depend on another's), so a share of the files can be read
    alone and URLs work."""
    needs_input: ClassVar[bool] = True
    """False for a corpus that ships with a package (inews)."""

    def check(self, cfg: ReaderConfig, where: Path | str) -> None:
        """Raise ValueError for a configuration this format cannot read, naming what is there instead (after the
        common checks: --input given and existing)."""

    def documents(self, cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
        """The corpus' documents, in a deterministic order, streamed; every problem counted in ``stats``."""
        raise NotImplementedError
