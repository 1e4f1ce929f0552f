"""CSV with a header row (--text_field columns joined), and YACND's news CSV (title and desc, with source, date and
url kept as metadata)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from data_tools.readers.base import Document, Reader, ReadStats
from data_tools.readers.files import decode_bytes, input_paths, location, open_input, open_lines, text_files

YACND_COLUMNS = ("title", "desc")


def header(f: Path) -> list[str]:
    with open_input(f) as fh:
        first = fh.readline()
    text, _ = decode_bytes(first, ReadStats(), str(f))
    return next(csv.reader([text.lstrip("\ufeff")]), [])


def rows(f: Path, stats: ReadStats) -> Iterator[tuple[int, dict]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # news bodies exceed the 128 KiB default
    lines = (text for _, text in open_lines(f, stats))
    reader = csv.reader(lines)
    names = None
    for row in reader:
        if names is None:
            names = [h.lstrip("\ufeff") for h in row]
            continue
        if not row:
            continue
        if len(row) != len(names):
            stats.problem("bad_csv_row", f"{f}:{reader.line_num} has {len(row)} fields, header has {len(names)}")
            continue
        yield reader.line_num, dict(zip(names, row))


class Csv(Reader):
    format = "csv"
    suffixes = (".csv",)

    def columns(self, cfg) -> tuple[str, ...]:
        return cfg.text_field

    def check(self, cfg, where) -> None:
        for f in text_files(where, self.suffixes):
            have = header(f)
            if missing := [c for c in self.columns(cfg) if c not in have]:
                flag = "the YACND header" if self.format == "yacnd" else "--text_field"
                raise ValueError(f"{f}: column(s) {missing} ({flag}) not in the file; it has columns {have}")

    def documents(self, cfg, stats: ReadStats) -> Iterator[Document]:
        for f in input_paths(location(cfg.input), self.suffixes):
            for line, row in rows(f, stats):
                yield Document("\n".join(row[k] for k in cfg.text_field), {"file": f.name, "line": line})


class Yacnd(Csv):
    format = "yacnd"

    def columns(self, cfg) -> tuple[str, ...]:
        return YACND_COLUMNS

    def documents(self, cfg, stats: ReadStats) -> Iterator[Document]:
        for f in input_paths(location(cfg.input), self.suffixes):
            for _, row in rows(f, stats):
                yield Document(row["title"] + "\n" + row["desc"], {k: row.get(k, "") for k in ("source", "date", "url")})
