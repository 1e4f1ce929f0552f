"""The one step type of the document pipeline: a filter that keeps a document or drops it with its reason.

    reader (data_tools.readers) -> normalise -> empty? -> filters (this protocol) -> exact dedup -> near dedup -> sink

A filter is a frozen dataclass: its fields are its settings and its command-line flags (the docstring under each is
the --help; the defaults turn it off), ``problems()`` names what is wrong with them, and ``drops(raw, text)``
decides per document (``raw`` as read, ``text`` normalised). Its ``reason`` is the name its drops are counted under:
the pack's manifest and summary, ``merge``'s sums and the near-dups pass count by reason and know no filter by name.
A ``FilterSet`` is a dataclass whose fields are filters (data_tools.quality.QualityFilters); adding a filter is a
class and a field there.

The same filters run inside datatrove pipelines (``datatrove_filters``: one datatrove ``BaseFilter`` step per active
filter, counting its drops in datatrove's stats and in a file the pass sums), so a pack in the ordered process pool
and a near-dups pass on datatrove's executors drop the same documents.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import ClassVar


@dataclasses.dataclass(frozen=True)
class DocumentFilter:
    """Keep a document, or drop it for ``reason``. Subclasses: frozen dataclasses whose defaults keep everything."""

    reason: ClassVar[str]
    """What a drop is counted as (manifest key, summary line, datatrove stat ``dropped_<reason>``)."""

    @property
    def active(self) -> bool:
        return self != type(self)()

    def settings(self) -> dict:
        return dataclasses.asdict(self)

    def problems(self) -> list[str]:
        """What is wrong with the settings, each naming its flag and the values that work."""
        return []

    def drops(self, raw: str, text: str) -> bool:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class FilterSet:
    """Filters run in field order; a document's verdict is the reason of the first that drops it."""

    @classmethod
    def of(cls, **flags):
        """From flag values by name (``QualityFilters.of(min_chars=20)``), as the command line builds it."""
        from roberta_ds.cli_args import build

        known = {k for f in cls().filters for k in f.settings()}
        if unknown := set(flags) - known:
            raise TypeError(f"{cls.__name__}: no filter has the setting(s) {sorted(unknown)}; settings: {sorted(known)}")
        return build(cls, flags)

    @property
    def filters(self) -> list[DocumentFilter]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f.reason for f in self.filters)

    @property
    def active(self) -> bool:
        return any(f.active for f in self.filters)

    def settings(self) -> dict:
        """Every filter's settings in one flat dict (the flags): the manifest's and the resume check's record."""
        return {k: v for f in self.filters for k, v in f.settings().items()}

    def problems(self) -> list[str]:
        return [p for f in self.filters for p in f.problems()]

    def verdict(self, raw: str, text: str) -> str | None:
        """The reason of the first active filter that drops the document, or None (kept)."""
        for f in self.filters:
            if f.active and f.drops(raw, text):
                return f.reason
        return None


def datatrove_filters(filters: FilterSet, counts_dir: str) -> list:
    """One datatrove ``BaseFilter`` step per active filter, reading the raw text from ``doc.metadata["raw"]`` and
    the normalised one from ``doc.text``. Each writes COUNTS_DIR/<rank>.<reason>.filter.json with its drops when its
    task's input is exhausted (``filter_counts`` sums them over tasks)."""
    from datatrove.pipeline.filters.base_filter import BaseFilter

    class DatatroveFilter(BaseFilter):
        type = "🔻 - FILTER"

        def __init__(self, step: DocumentFilter):
            super().__init__()
            self.step, self.name, self.dropped = step, f"roberta-ds {step.reason}", 0

        def filter(self, doc) -> bool | tuple[bool, str]:
            if self.step.drops(doc.metadata["raw"], doc.text):
                self.dropped += 1
                return False, self.step.reason
            return True

        def run(self, data, rank: int = 0, world_size: int = 1):
            self.dropped = 0
            yield from super().run(data, rank, world_size)
            Path(counts_dir).mkdir(parents=True, exist_ok=True)
            (Path(counts_dir) / f"{rank:05d}.{self.step.reason}.filter.json").write_text(
                json.dumps({"reason": self.step.reason, "dropped": self.dropped}), encoding="utf-8")

    return [DatatroveFilter(f) for f in filters.filters if f.active]


def filter_counts(counts_dir: Path, reasons: tuple[str, ...]) -> dict[str, int]:
    """Drops by reason, summed over the tasks' count files (datatrove_filters)."""
    out = dict.fromkeys(reasons, 0)
    for p in sorted(Path(counts_dir).glob("*.filter.json")):
        c = json.loads(p.read_text(encoding="utf-8"))
        out[c["reason"]] = out.get(c["reason"], 0) + c["dropped"]
    return out
