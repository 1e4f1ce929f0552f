"""THUCNews: a tree <category>/<number>.txt, one article per file (title line, then the body)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from data_tools.readers.base import Document, Reader, ReadStats
from data_tools.readers.files import decode_bytes, skipped


def categories(root: Path) -> list[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []


def _name_key(p: Path) -> tuple:
    # THUCNews files are numbered (798977.txt): numeric order, not "10" < "9".
    return (0, int(p.stem), p.name) if p.stem.isdigit() else (1, 0, p.name)


class ThucNews(Reader):
    format = "thucnews"

    def check(self, cfg, where) -> None:
        if isinstance(where, str):
            raise ValueError(f"--input {where}: --format thucnews reads a local directory; copy it to local disk "
                             "first (URLs work for text, jsonl, csv, yacnd and parquet)")
        found = categories(where)
        if not found:
            raise ValueError(f"--input {where}: no category folders (THUCNews/<category>/*.txt) found")
        unknown = [c for c in cfg.categories if c not in found]
        if unknown:
            raise ValueError(f"--categories {','.join(unknown)} not found in {where}; categories found: "
                             f"{', '.join(found)}")

    def documents(self, cfg, stats: ReadStats) -> Iterator[Document]:
        root = Path(cfg.input)
        for cat in list(cfg.categories) or categories(root):
            files = sorted((f for f in (root / cat).iterdir() if f.is_file() and f.suffix == ".txt"), key=_name_key)
            if cfg.max_files_per_category is not None:
                files = files[: cfg.max_files_per_category]
            for f in files:
                data = f.read_bytes()
                if skipped(data, f, stats):
                    continue
                stats.files_read += 1
                text, enc = decode_bytes(data, stats, str(f))
                stats.encodings[enc] += 1
                stats.categories[cat] += 1
                title, _, body = text.partition("\n")
                # body lines are indented with two U+3000; whitespace normalisation removes them.
                yield Document(title.strip() + "\n" + body, {"category": cat, "file": f"{cat}/{f.name}"})
