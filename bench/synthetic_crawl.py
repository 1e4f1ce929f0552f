"""A synthetic news crawl: real Chinese sentences (from inews, or any documents given) recombined into new documents,
seeded, plus planted near-duplicates (a copy with a few characters changed and a footer added), as crawls carry one
wire story under many bylines. Used by bench/pack_scale.py and tests/test_near_dedup.py.
"""

from __future__ import annotations

import random
import re

_SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]?")
FOOTERS = ("（本文来源：新华网 责任编辑：王小明）", "【版权声明】本文为转载，如有侵权请联系删除。",
           "更多精彩内容请关注我们的微信公众号。", "（记者 李华 通讯员 张伟 报道）")
_SWAPS = "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生"


def sentences(docs: list[str], min_chars: int = 8) -> list[str]:
    """The distinct sentences of ``docs`` with at least ``min_chars`` characters, in order."""
    out = dict.fromkeys(s.strip() for d in docs for s in _SENTENCE.findall(d))
    return [s for s in out if len(s) >= min_chars]


def recombined(pool: list[str], n_docs: int, seed: int, sentences_per_doc: tuple[int, int] = (8, 30)) -> list[str]:
    """``n_docs`` documents of random sentences from ``pool`` (lengths uniform in ``sentences_per_doc``), split into
    paragraphs of 2-5 sentences; two documents share a sentence now and then, never most of their text."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        k = rng.randint(*sentences_per_doc)
        picked = [pool[rng.randrange(len(pool))] for _ in range(k)]
        paras, i = [], 0
        while i < k:
            j = i + rng.randint(2, 5)
            paras.append("".join(picked[i:j]))
            i = j
        docs.append("\n".join(paras))
    return docs


def near_copy(doc: str, rng: random.Random, changes: int = 5) -> str:
    """``doc`` with ``changes`` characters replaced by common ones and a footer added."""
    chars = list(doc)
    for _ in range(changes):
        i = rng.randrange(len(chars))
        if not chars[i].isspace():
            chars[i] = rng.choice(_SWAPS)
    return "".join(chars) + "\n" + rng.choice(FOOTERS)


def with_planted(docs: list[str], n_planted: int, seed: int) -> tuple[list[str], list[int]]:
    """``docs`` with near copies of ``n_planted`` of them inserted later in the order; returns the corpus and the
    positions of the planted copies in it."""
    rng = random.Random(seed)
    originals = sorted(rng.sample(range(len(docs)), n_planted))
    inserts: dict[int, list[str]] = {}
    for o in originals:  # each copy lands after its original
        inserts.setdefault(rng.randint(o + 1, len(docs)), []).append(near_copy(docs[o], rng))
    out, planted = [], []
    for i in range(len(docs) + 1):
        for copy in inserts.get(i, []):
            planted.append(len(out))
            out.append(copy)
        if i < len(docs):
            out.append(docs[i])
    return out, planted
