"""Output directories that we may clean up: only what we wrote ourselves, never a user's files.

Before writing a single byte into an output directory, a command (pack, merge, export) writes a marker
(``.written_by_roberta_ds.json``) naming itself and the entries it creates. Leftovers of a killed run are removed
only when that marker is there, and only the entries it names. A non-empty directory without the marker is
someone else's (a corpus laid out as ``train/`` and ``validation/``, a colleague's model card) and is refused,
naming what it holds: nothing in it is touched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MARKER_NAME = ".written_by_roberta_ds.json"


def _describe(out: Path, names: list[str]) -> str:
    shown = ", ".join(f"{n}/" if (out / n).is_dir() else n for n in names[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def claim_dir(out: Path, command: str, entries: set[str], *, flag: str, what: str, clean: bool = True) -> None:
    """Make ``out`` the output of ``command``: refuse anything in it we did not write; remove our own leftovers
    (the marker's entries) unless ``clean`` is off (a re-export overwrites its own files in place); then write
    the marker naming ``entries``."""
    marker = out / MARKER_NAME
    # a marker half-written by a run killed at its very start is ours too
    present = sorted(p.name for p in out.iterdir() if p.name != MARKER_NAME + ".tmp") if out.exists() else []
    if present and not marker.exists():
        raise ValueError(
            f"{flag} {out} is not empty and not {what} (it holds {_describe(out, present)}, not written by "
            f"{command}); nothing in it was changed. Choose a new or empty directory.")
    if marker.exists():
        ours = set(json.loads(marker.read_text(encoding="utf-8"))["entries"]) | {MARKER_NAME}
        foreign = [n for n in present if n not in ours]
        if foreign:
            raise ValueError(
                f"{flag} {out} holds files roberta-ds did not write ({_describe(out, foreign)}) beside its own; "
                "nothing was changed. Move them out, or choose a new directory.")
        for name in sorted(ours - {MARKER_NAME}) if clean else ():
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    record_entries(out, command, entries)


def record_entries(out: Path, command: str, entries: set[str]) -> None:
    """Write (atomically) the marker saying ``command`` wrote ``entries`` in ``out``."""
    tmp = out / (MARKER_NAME + ".tmp")
    tmp.write_text(json.dumps({"written_by": command, "entries": sorted(entries)}, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / MARKER_NAME)
