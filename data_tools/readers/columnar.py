"""Columnar inputs read with pyarrow one record batch at a time: parquet files, and the Arrow files of a Hugging Face
`datasets` directory written by save_to_disk (hf)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from data_tools.readers.base import Document, Reader, ReadStats
from data_tools.readers.files import UrlFile, input_paths, location


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise ValueError("--format parquet/hf needs pyarrow: pip install pyarrow") from None
    return pyarrow


def hf_files(root: Path) -> list[Path]:
    """The Arrow files of a `datasets` save_to_disk directory (state.json lists them in order), or of each split
    of a DatasetDict directory (dataset_dict.json lists the splits)."""
    if (root / "dataset_dict.json").exists():
        splits = json.loads((root / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        return [f for split in splits for f in hf_files(root / split)]
    state = root / "state.json"
    if not state.exists():
        raise ValueError(f"--input {root}: not a `datasets` directory written by save_to_disk (no state.json or "
                         "dataset_dict.json)")
    return [root / d["filename"] for d in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]


def _numbered(batches) -> Iterator[tuple[int, dict]]:
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
            n += 1
            yield n, row


class Parquet(Reader):
    format = "parquet"
    suffixes = (".parquet",)

    def files(self, cfg) -> list:
        return input_paths(location(cfg.input), self.suffixes)

    def columns(self, f) -> list[str]:
        pa = _pyarrow()
        return list(pa.parquet.ParquetFile(f.open("rb") if isinstance(f, UrlFile) else f).schema_arrow.names)

    def batches(self, f, columns: list[str]):
        pa = _pyarrow()
        source = f.open("rb") if isinstance(f, UrlFile) else f
        return pa.parquet.ParquetFile(source).iter_batches(batch_size=1024, columns=columns)

    def check(self, cfg, where) -> None:
        for f in self.files(cfg):
            names = self.columns(f)
            if missing := [c for c in cfg.text_field if c not in names]:
                raise ValueError(f"{f}: column(s) {missing} (--text_field) not in the file; it has columns {names}")

    def documents(self, cfg, stats: ReadStats) -> Iterator[Document]:
        """(row number, {column: value}) one record batch at a time: memory stays at one batch, not the file."""
        for f in self.files(cfg):
            stats.files_read += 1
            stats.encodings["utf-8"] += 1  # Arrow strings are UTF-8 by definition
            for n, row in _numbered(self.batches(f, list(cfg.text_field))):
                missing = [k for k in cfg.text_field if not isinstance(row.get(k), str)]
                if missing:
                    stats.problem("missing_field", f"{f}:{n} has no string in {missing}")
                    continue
                yield Document("\n".join(row[k] for k in cfg.text_field), {"file": f.name, "row": n})


class HfDataset(Parquet):
    format = "hf"
    suffixes = ()  # a directory whose state.json orders its files: read whole

    def files(self, cfg) -> list:
        return hf_files(Path(cfg.input))

    def columns(self, f) -> list[str]:
        pa = _pyarrow()
        with pa.memory_map(str(f)) as src:
            return list(pa.ipc.open_stream(src).schema.names)

    def batches(self, f, columns: list[str]):
        pa = _pyarrow()
        with pa.memory_map(str(f)) as src:
            yield from (b.select(columns) for b in pa.ipc.open_stream(src))

    def check(self, cfg, where) -> None:
        if isinstance(where, str):
            raise ValueError(f"--input {where}: --format hf reads a local directory; copy it to local disk "
                             "first (URLs work for text, jsonl, csv, yacnd and parquet)")
        super().check(cfg, where)
