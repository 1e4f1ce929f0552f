"""Plain text: one document per line (--doc_sep line) or blank-line separated documents (--doc_sep blank)."""

from __future__ import annotations

from collections.abc import Iterator

from data_tools.readers.base import Document, Reader, ReadStats
from data_tools.readers.files import input_paths, location, open_lines


class Text(Reader):
    format = "text"
    suffixes = (".txt",)

    def documents(self, cfg, stats: ReadStats) -> Iterator[Document]:
        for f in input_paths(location(cfg.input), self.suffixes):
            if cfg.doc_sep == "line":
                for n, line in open_lines(f, stats):
                    yield Document(line, {"file": f.name, "line": n})
                continue
            buf: list[str] = []
            start = 1
            for n, line in open_lines(f, stats):
                if line.strip():
                    if not buf:
                        start = n
                    buf.append(line)
                elif buf:
                    yield Document("".join(buf), {"file": f.name, "line": start})
                    buf = []
            if buf:
                yield Document("".join(buf), {"file": f.name, "line": start})
