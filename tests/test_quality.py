"""Quality filters of `data_tools pack` (data_tools/quality.py): each a flag, off by default, every drop counted by
reason with examples in the manifest, across --part and merge too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import pack_corpus
from data_tools.cli import main as data_tools_main
from data_tools.quality import REASONS, QualityFilters, repeated_share
from roberta_ds.shard_format import read_manifest

SHORT = "短讯"
ENGLISH = "Home | News | Sports | Finance | Contact us | Login | Register | Privacy policy | Terms of use"
REPEATED_LINES = "新闻标题\n" + "点击查看更多精彩新闻内容\n" * 5 + "今天的正文很短"
REPEATED_PARAGRAPHS = ("免责声明：本文仅供参考\n\n免责声明：本文仅供参考\n\n"
                       + "\n".join(f"第{i}行正文讲述了当天发生在本市的一件新鲜事情" for i in range(6)))
LONG = "据新华社报道，" + "本市今日举行了多场活动，市民踊跃参加。" * 300  # a page of one sentence, 6,007 characters
PLANTED = [SHORT, ENGLISH, REPEATED_LINES, REPEATED_PARAGRAPHS, LONG]
FLAGS = ("--min_chars", "20", "--max_non_han", "0.7", "--max_repeated_lines", "0.3",
         "--max_repeated_paragraphs", "0.3", "--max_chars", "5000")


def test_each_filter_names_its_reason():
    f = QualityFilters.of(min_chars=20, max_non_han=0.7, max_repeated_lines=0.3, max_repeated_paragraphs=0.3,
                          max_chars=5000)
    assert [f.verdict(t, " ".join(t.split())) for t in PLANTED] == list(REASONS)
    assert f.settings() == {"min_chars": 20, "max_non_han": 0.7, "max_repeated_lines": 0.3,
                            "max_repeated_paragraphs": 0.3, "max_chars": 5000}  # flat: the flags, as recorded
    news = "国足热身赛首发名单出炉\n主教练在赛前发布会上表示，球队将以4-3-3阵型迎战对手，C罗式的个人能力不是全部。"
    assert f.verdict(news, " ".join(news.split())) is None  # digits and a Latin letter: still Chinese news
    assert QualityFilters().verdict(SHORT, SHORT) is None and not QualityFilters().active  # off by default
    assert repeated_share(["a", "a"]) == 0.5 and repeated_share(["a", "", "b"]) == 0.0
    assert QualityFilters.of(max_non_han=1.5, min_chars=-1).problems() == [
        "--min_chars -1: must be >= 0 (0 keeps every length)", "--max_non_han 1.5: a share in [0, 1] (1 turns the filter off)"]
    with pytest.raises(TypeError, match="no filter has the setting"):
        QualityFilters.of(min_char=20)


def test_pack_drops_and_counts_planted_documents_and_keeps_the_rest(zh_docs, vocab_dir: Path, tmp_path: Path):
    real = zh_docs[:40]
    docs = PLANTED + real  # first: the manifest's examples are the first drops of each reason
    plain = read_manifest(pack_corpus(docs, tmp_path / "plain", vocab_dir, "--max_seq_length", "128"))
    assert plain.corpus["documents_kept"] == 45 and "quality_filters" not in plain.corpus  # nothing dropped unasked
    # The real articles' own drops (a few inews posts are a title and the same title again), then the planted ones:
    # exactly one more per reason.
    own = read_manifest(pack_corpus(real, tmp_path / "real", vocab_dir, "--max_seq_length", "128", *FLAGS))
    own = own.corpus["quality_filters"]["dropped"]
    out = pack_corpus(docs, tmp_path / "filtered", vocab_dir, "--max_seq_length", "128", *FLAGS)
    m = read_manifest(out)
    q = m.corpus["quality_filters"]
    assert q["dropped"] == {r: own[r] + 1 for r in REASONS}
    assert m.corpus["documents_kept"] == 40 - sum(own.values())
    assert q["settings"] == {"min_chars": 20, "max_non_han": 0.7, "max_repeated_lines": 0.3,
                             "max_repeated_paragraphs": 0.3, "max_chars": 5000}
    for reason, text in zip(REASONS, PLANTED):
        assert q["examples"][reason][0] == " ".join(text.split())[:80]
    assert m.source["options"]["quality"] == q["settings"]  # a resume with other filters is refused

    # --part I/N: each part filters its own documents; merged, the drops add up to the single pack's
    parts = [pack_corpus(docs, tmp_path / f"part{i}", vocab_dir, "--max_seq_length", "128", "--part", f"{i}/2", *FLAGS)
             for i in (1, 2)]
    assert data_tools_main(["merge", *map(str, parts), "--output", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "manifest.json").read_text(encoding="utf-8"))["corpus"]
    assert merged["quality_filters"]["dropped"] == q["dropped"]
    assert merged["documents_kept"] == m.corpus["documents_kept"]


def test_bad_filter_values_are_named(tmp_path: Path, capsys):
    src = tmp_path / "c.jsonl"
    src.write_text('{"text": "一"}\n', encoding="utf-8")
    rc = data_tools_main(["pack", "--format", "jsonl", "--input", str(src), "--output", str(tmp_path / "o"),
                          "--tokenizer_path", "unused", "--max_repeated_lines", "30"])
    assert rc == 2 and "--max_repeated_lines 30.0: a share in [0, 1]" in capsys.readouterr().err


def test_every_document_filtered_is_a_clear_error(vocab_dir: Path, tmp_path: Path, capsys):
    src = tmp_path / "c.jsonl"
    src.write_text('{"text": "一二三"}\n{"text": "四五"}\n', encoding="utf-8")
    rc = data_tools_main(["pack", "--format", "jsonl", "--input", str(src), "--output", str(tmp_path / "o"),
                          "--tokenizer_path", str(vocab_dir), "--min_chars", "10"])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2 and "no documents packed" in err and "2 dropped as too short" in err, err


def test_options_recorded_before_a_filter_existed_still_match():
    """A drop list, a resume state or a part recorded before --max_chars existed (no max_chars in its settings)
    matches a pack with that filter off, and not one with it on."""
    from data_tools.quality import comparable

    old = {"input": "x", "quality": {"min_chars": 20, "max_non_han": 1.0, "max_repeated_lines": 1.0,
                                     "max_repeated_paragraphs": 1.0}}
    new = {"input": "x", "quality": QualityFilters.of(min_chars=20).settings()}
    assert old != new and comparable(old) == comparable(new)
    assert comparable({"input": "x", "quality": None}) == {"input": "x", "quality": None}
    assert comparable(old) != comparable({"input": "x", "quality": QualityFilters.of(min_chars=20, max_chars=99).settings()})
