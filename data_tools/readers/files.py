"""Reading bytes, shared by every reader: local files, globs and fsspec URLs in a fixed order; gzip, bz2, xz and zstd
decompressed as streamed; utf-8 with a gb18030 fallback, per line; empty and binary files skipped and counted."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from data_tools.readers.base import ReadStats

SNIFF_BYTES = 8192


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
    return b"\x00" in head[:SNIFF_BYTES]


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


def url_files(url: str, suffixes: tuple[str, ...]) -> list[UrlFile]:
    """As input_paths, for an fsspec URL: the file itself, a directory's files of the format (recursively), or a
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


def input_paths(p: Path | str, suffixes: tuple[str, ...]) -> list[Path] | list[UrlFile]:
    """The input files, in a fixed order: --input itself (a file), every file of the format below a directory
    (recursively, compressed ones included), or the matches of a glob pattern (``**`` matches any depth)."""
    if isinstance(p, str):
        return url_files(p, suffixes)
    if is_glob(str(p)):
        import glob

        return sorted(Path(x) for x in glob.glob(str(p), recursive=True) if Path(x).is_file())
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file() and data_suffix(f) in suffixes)


def text_files(p: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """The files the reader will read, less empty and binary ones (the reader counts and skips those)."""
    for f in input_paths(p, suffixes):
        with open_input(f) as fh:
            head = fh.read(SNIFF_BYTES)
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


def skipped(head: bytes, f: Path, stats: ReadStats) -> bool:
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


def open_lines(f: Path, stats: ReadStats) -> Iterator[tuple[int, str]]:
    """Stream (line number, decoded line) of a text file, decoding each line utf-8 then gb18030.

    Counts the file once under the encoding its lines needed; skips empty and binary files (counted).
    """
    with open_input(f) as fh:
        head = fh.read(SNIFF_BYTES)
        if skipped(head, f, stats):
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

