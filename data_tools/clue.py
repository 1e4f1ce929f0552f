"""Labelled files in CLUE's layout, the one Chinese users evaluate encoders on: JSON lines read by their keys.

    single text   {"sentence": ..., "label": ...}                    TNEWS, IFLYTEK (label_desc / label_des ignored)
    sentence pair {"sentence1": ..., "sentence2": ..., "label": ...}  AFQMC, CMNLI, OCNLI

Train and dev files carry labels; test files may not (their predictions are written in CLUE's submission format,
``{"id": ..., "label": ...}`` per line). Labels are kept as the strings they are (TNEWS' "102", CMNLI's
"neutral"); a label "-" (CMNLI/OCNLI examples without a gold label) leaves the example out, counted. Texts are
normalised as `data_tools pack` normalises a corpus (data_tools.normalize). A whole-file JSON array is read too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from data_tools.normalize import normalize
from data_tools.readers import ReadStats, decode_bytes

SUFFIXES = (".json", ".jsonl")
LAYOUTS = {"pair": ("sentence1", "sentence2"), "single": ("sentence",)}
"""The text keys of each layout, the pair's first: a record with sentence1 and sentence2 is a pair."""
NO_GOLD = "-"
"""CMNLI's and OCNLI's label for an example the annotators did not agree on; CLUE's baselines leave them out."""
TASKS = ("afqmc", "tnews", "iflytek", "cmnli", "ocnli")
"""CLUE's classification tasks the probe knows by name (their reference scores: roberta_ds.downstream.probe_config)."""
SUBMISSION_NAMES = {"afqmc": "afqmc_predict.json", "tnews": "tnews10_predict.json", "iflytek": "iflytek_predict.json",
                    "cmnli": "cmnli_predict.json", "ocnli": "ocnli_50k_predict.json"}
"""The file names CLUE's submission zip expects; other tasks get NAME_predict.json."""


def is_clue_file(source: str | None) -> bool:
    return source is not None and Path(source).suffix.lower() in SUFFIXES and Path(source).is_file()


@dataclass
class ClueFile:
    """One CLUE-layout file: its examples (texts then the label, None when the file has none), the records' ids, the
    layout, and what was left out and why."""

    path: str
    layout: str
    """single or pair (LAYOUTS)."""
    examples: list[tuple]
    ids: list
    """Each example's "id" field (its record number, from 0, where it has none): the submission's ids."""
    left_out: dict[str, int] = field(default_factory=dict)
    encoding: str = "utf-8"
    decode_errors: int = 0
    """1 when the bytes were neither UTF-8 nor GB18030 and undecodable ones became U+FFFD (readers.decode_bytes)."""

    @property
    def labelled(self) -> bool:
        return all(e[-1] is not None for e in self.examples)

    def input_counts(self) -> dict:
        return {"records": len(self.examples) + sum(self.left_out.values()), "examples": len(self.examples),
                "left_out": dict(self.left_out), "encodings": {self.encoding: 1}, "decode_errors": self.decode_errors}


def read_clue(path: str | Path, *, labels: bool = True) -> ClueFile:
    """Read a CLUE-layout file. ``labels``: every record must carry one (train/dev); otherwise a label is read where
    present and the examples are predicted (test). Raises ValueError naming the file, the record and the keys."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ValueError(f"{p}: cannot read ({e.strerror or e})") from e
    stats = ReadStats()
    text, enc = decode_bytes(data, stats, str(p))
    records = _records(p, text)
    if not records:
        raise ValueError(f"{p}: no records (expected JSON lines in CLUE's layout: {_layout_help()})")
    first = records[0][1]
    layout = next((name for name, keys in LAYOUTS.items() if all(k in first for k in keys)), None)
    if layout is None:
        raise ValueError(f"{p}: record 1 has keys {sorted(first)}; CLUE's layout is {_layout_help()}")
    keys = LAYOUTS[layout]
    out = ClueFile(str(p), layout, [], [], encoding=enc, decode_errors=stats.decode_errors)
    for n, (line, rec) in enumerate(records):
        missing = [k for k in keys if not isinstance(rec.get(k), str)]
        if missing:
            raise ValueError(f"{p}: line {line}: no text under {missing} (the file's first record is a {layout} "
                             f"example: {', '.join(keys)})")
        label = rec.get("label")
        if label is None and labels:
            raise ValueError(f"{p}: line {line}: no \"label\"; train and dev files need one per record (a test file "
                             "without labels goes to --predict)")
        if label is not None and str(label).strip() == NO_GOLD:
            out.left_out["no gold label ('-')"] = out.left_out.get("no gold label ('-')", 0) + 1
            continue
        texts = [normalize(rec[k])[0] for k in keys]
        if not all(texts):
            out.left_out["empty text"] = out.left_out.get("empty text", 0) + 1
            continue
        out.examples.append((*texts, None if label is None else str(label).strip()))
        out.ids.append(rec.get("id", n))
    if not out.examples:
        raise ValueError(f"{p}: every record was left out ({out.left_out})")
    return out


def _layout_help() -> str:
    return "{\"sentence\", \"label\"} (single text) or {\"sentence1\", \"sentence2\", \"label\"} (pair), one per line"


def _records(p: Path, text: str) -> list[tuple[int, dict]]:
    """(line number, record) for each JSON line, or for each item of a whole-file JSON array."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not a JSON array ({e.msg} at line {e.lineno})") from e
        bad = [i for i, r in enumerate(items, 1) if not isinstance(r, dict)]
        if bad:
            raise ValueError(f"{p}: item {bad[0]} of the array is not an object")
        return list(enumerate(items, 1))
    out, bad = [], []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad.append(i)
            continue
        if isinstance(rec, dict):
            out.append((i, rec))
        else:
            bad.append(i)
    if bad:
        raise ValueError(f"{p}: {len(bad)} line(s) are not JSON objects, first at line {bad[0]} (CLUE files hold one "
                         "JSON object per line)")
    return out


def task_name(*sources: str | None) -> str | None:
    """The CLUE task a file belongs to, from its path (tnews/train.json, ocnli_public/dev.json, afqmc_dev.jsonl...):
    the first known name in the path's parts, from the file outwards; None when there is none."""
    for source in sources:
        if source is None:
            continue
        for part in reversed(Path(source).with_suffix("").parts):
            for name in TASKS:
                if name in part.lower():
                    return name
    return None


def write_submission(path: Path, ids: list, labels: list[str]) -> Path:
    """CLUE's submission format: one {"id": ..., "label": ...} object per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": i, "label": y}, ensure_ascii=False) + "\n" for i, y in zip(ids, labels)),
                    encoding="utf-8")
    return path
