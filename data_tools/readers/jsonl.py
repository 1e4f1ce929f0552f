"""JSON lines: one object per line, the --text_field string fields joined."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from data_tools.readers.base import Document, Reader, ReadStats
from data_tools.readers.files import input_paths, location, open_input, open_lines, text_files


def first_keys(f: Path) -> list[str] | None:
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


class Jsonl(Reader):
    format = "jsonl"
    suffixes = (".jsonl", ".json")

    def check(self, cfg, where) -> None:
        for f in text_files(where, self.suffixes):
            keys = first_keys(f)
            if keys is not None and not any(k in keys for k in cfg.text_field):
                raise ValueError(
                    f"{f}: --text_field {','.join(cfg.text_field)} not in the first record; it has fields {keys}")

    def documents(self, cfg, stats: ReadStats) -> Iterator[Document]:
        for f in input_paths(location(cfg.input), self.suffixes):
            for n, line in open_lines(f, stats):
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
