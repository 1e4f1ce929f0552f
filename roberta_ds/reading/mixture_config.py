"""The settings of mixtures and phases: a mixture file's sources and ``--phases``, parsed and checked without torch
(the command line validates them before the seconds of importing it; mixture.py builds the data from them)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

EXHAUSTED = ("repeat", "stop")
SOURCE_KEYS = {"name", "dir", "weight", "on_exhausted", "max_epochs"}


@dataclass(frozen=True)
class Source:
    """One corpus of a mixture: a shard directory and its weight."""

    name: str
    """Names the source in summaries, records and evaluations."""
    dir: str
    """A directory written by `python -m data_tools pack`."""
    weight: float
    """Relative weight (normalised over the sources): the share of every global batch's sequences it gives."""
    on_exhausted: str = "repeat"
    """'repeat': start another pass (upsampling a small corpus is a weight above its size share); 'stop': the run
    ends before the step that would read past ``max_epochs`` passes."""
    max_epochs: float | None = None
    """With 'stop': passes over the source before the run ends (default 1)."""

    @property
    def epoch_limit(self) -> float | None:
        return None if self.on_exhausted == "repeat" else (self.max_epochs or 1.0)

    def to_dict(self) -> dict:
        return {"name": self.name, "dir": str(Path(self.dir).resolve()), "weight": self.weight,
                "on_exhausted": self.on_exhausted, "max_epochs": self.max_epochs}


def load_mixture(path: str | Path) -> list[Source]:
    """The sources of a mixture file: ``{"sources": [{"name", "dir", "weight", "on_exhausted"?, "max_epochs"?}]}``.
    A relative ``dir`` is relative to the file. Every problem is collected and raised in one ValueError."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"--mixture {path}: cannot read it ({e.strerror})") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"--mixture {path}: not JSON ({e})") from e
    items = raw.get("sources") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError(f'--mixture {path}: expected {{"sources": [{{"name": ..., "dir": ..., "weight": ...}}, ...]}}')
    problems, sources, names = [], [], set()
    for i, item in enumerate(items):
        where = f"source {i + 1}" + (f" ({item.get('name')!r})" if isinstance(item, dict) and item.get("name") else "")
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object with name, dir and weight")
            continue
        unknown = sorted(set(item) - SOURCE_KEYS)
        if unknown:
            problems.append(f"{where}: unknown key(s) {unknown} (known: {sorted(SOURCE_KEYS)})")
        name, d, w = item.get("name"), item.get("dir"), item.get("weight")
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "/\\ "):
            problems.append(f"{where}: name must be a non-empty word (no spaces or slashes), got {name!r}")
        elif name in names:
            problems.append(f"{where}: the name {name!r} is used by two sources; give each source its own name")
        else:
            names.add(name)
        if not isinstance(d, str) or not d:
            problems.append(f"{where}: dir must be a shard directory path")
        else:
            d = str(Path(d) if Path(d).is_absolute() else (path.parent / d))
            if not (Path(d) / "manifest.json").is_file():
                problems.append(f"{where}: dir {d} is not a shard directory (no manifest.json; make one with "
                                "`python -m data_tools pack`)")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            problems.append(f"{where}: weight must be a number > 0, got {w!r}")
        mode = item.get("on_exhausted", "repeat")
        if mode not in EXHAUSTED:
            problems.append(f"{where}: on_exhausted must be one of {list(EXHAUSTED)}, got {mode!r}")
        cap = item.get("max_epochs")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or cap <= 0):
            problems.append(f"{where}: max_epochs must be a number > 0, got {cap!r}")
        elif cap is not None and mode != "stop":
            problems.append(f"{where}: max_epochs needs \"on_exhausted\": \"stop\" (a repeating source has no limit)")
        if not problems:
            sources.append(Source(name, d, float(w), mode, None if cap is None else float(cap)))
    if problems:
        raise ValueError(f"--mixture {path}:\n  " + "\n  ".join(problems))
    return sources


@dataclass(frozen=True)
class PhaseSpec:
    seq_len: int
    share: float


def parse_phases(text: str) -> list[PhaseSpec]:
    """``128:0.9,512:0.1`` -> the phases (each a length and a share of the run; shares sum to 1)."""
    phases, problems = [], []
    for part in [p.strip() for p in text.split(",")]:
        length, _, share = part.partition(":")
        try:
            spec = PhaseSpec(int(length), float(share))
        except ValueError:
            problems.append(f"{part!r} is not LENGTH:SHARE (e.g. 128:0.9)")
            continue
        if spec.seq_len < 8:
            problems.append(f"{part!r}: the length must be >= 8")
        if not 0 < spec.share <= 1:
            problems.append(f"{part!r}: the share must be in (0, 1]")
        phases.append(spec)
    if not problems and abs(sum(p.share for p in phases) - 1.0) > 1e-6:
        problems.append(f"the shares sum to {sum(p.share for p in phases):g}, not 1")
    if problems:
        raise ValueError(f"--phases {text}: " + "; ".join(problems))
    return phases
