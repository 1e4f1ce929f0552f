"""Every input format and every kind of bad input, through the real CLI: a clear message for
configuration mistakes (exit 2), counted problems for bad rows/files (never a crash)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from data_tools.cli import main
from data_tools.config import PackConfig
from data_tools.pack_job import run_pack
from data_tools.pack_state import Counters
from data_tools.readers import ReaderConfig, ReadStats, check_input, read_documents
from roberta_ds.shard_format import read_manifest

HEADLINES = {
    "体育": ["火箭主场大胜湖人 姚明砍下三十分", "中国女排三比零横扫日本队晋级决赛", "国足热身赛两球击败泰国队"],
    "财经": ["央行宣布下调存款准备金率零点五个百分点", "上半年国内生产总值同比增长百分之七", "人民币对美元汇率中间价小幅上调"],
    "科技": ["国产大飞机完成首次试飞", "新一代移动通信网络开始商用试点"],
}


def pack(tmp: Path, vocab: Path, fmt: str, inp: Path | None, *extra: str, out: str = "out") -> int:
    args = ["pack", "--format", fmt, "--output", str(tmp / out), "--tokenizer_path", str(vocab), "--max_seq_length", "32"]
    if inp is not None:
        args += ["--input", str(inp)]
    return main([*args, *extra])


def corpus(tmp: Path) -> dict:
    return read_manifest(tmp / "out").corpus


def make_thucnews(root: Path) -> Path:
    for cat, lines in HEADLINES.items():
        (root / cat).mkdir(parents=True)
        for i, title in enumerate(lines):
            body = "\n".join("\u3000\u3000" + title + "，记者报道。" for _ in range(2))
            (root / cat / f"{10 - i}.txt").write_text(title + "\n" + body + "\n", encoding="utf-8")
    return root


def test_thucnews_categories_and_limits(tmp_path, vocab_dir) -> None:
    root = make_thucnews(tmp_path / "THUCNews")
    stats = ReadStats()
    docs = list(read_documents(ReaderConfig("thucnews", root, categories=("财经",), max_files_per_category=2), stats))
    assert [d.meta["category"] for d in docs] == ["财经", "财经"]
    # numeric file order (8, 9, 10), not lexical ("10" < "8"): the limit keeps 8.txt and 9.txt
    assert [d.meta["file"] for d in docs] == ["财经/8.txt", "财经/9.txt"]
    assert docs[0].text.startswith(HEADLINES["财经"][2] + "\n")
    assert pack(tmp_path, vocab_dir, "thucnews", root, "--val_fraction", "0") == 0
    c = corpus(tmp_path)
    assert c["documents_read"] == 8 and c["documents_kept"] == 8 and c["encodings"] == {"utf-8": 8}


def test_thucnews_unknown_category_lists_found(tmp_path, vocab_dir, capsys) -> None:
    root = make_thucnews(tmp_path / "THUCNews")
    assert pack(tmp_path, vocab_dir, "thucnews", root, "--categories", "体育,军事") == 2
    err = capsys.readouterr().err
    assert "军事" in err and "categories found: 体育, 科技, 财经" in err


def test_gbk_file_decoded_and_counted(tmp_path, vocab_dir) -> None:
    d = tmp_path / "txt"
    d.mkdir()
    (d / "a.txt").write_text("\n".join(HEADLINES["体育"]) + "\n", encoding="utf-8")
    (d / "b.txt").write_bytes(("\n".join(HEADLINES["财经"]) + "\n").encode("gbk"))
    (d / "c.txt").write_bytes(b"")
    (d / "d.txt").write_bytes(b"\x00\x01\x02binary\x00" * 10)
    assert pack(tmp_path, vocab_dir, "text", d, "--val_fraction", "0") == 0
    c = corpus(tmp_path)
    assert c["encodings"] == {"gb18030": 1, "utf-8": 1}
    assert c["empty_files"] == 1 and c["binary_files_skipped"] == 1
    assert c["documents_kept"] == 6
    texts = [doc.text.strip() for doc in read_documents(ReaderConfig("text", d), ReadStats())]
    assert HEADLINES["财经"][0] in texts


def test_text_blank_line_separated(tmp_path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("第一段。\n第一段续。\n\n\n第二篇文章。\n", encoding="utf-8")
    docs = list(read_documents(ReaderConfig("text", f, doc_sep="blank"), ReadStats()))
    assert [d.text for d in docs] == ["第一段。\n第一段续。\n", "第二篇文章。\n"]


def test_jsonl_bad_rows_counted(tmp_path, vocab_dir) -> None:
    f = tmp_path / "c.jsonl"
    rows = [json.dumps({"title": t, "body": t + "。"}, ensure_ascii=False) for t in HEADLINES["体育"]]
    rows.insert(1, "{not json")
    rows.insert(2, json.dumps({"title": "只有标题"}, ensure_ascii=False))
    rows.append(rows[0])  # an exact duplicate
    rows.append(json.dumps({"title": " ", "body": "\u3000"}))  # empty after whitespace strip
    f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert pack(tmp_path, vocab_dir, "jsonl", f, "--text_field", "title,body", "--val_fraction", "0") == 0
    c = corpus(tmp_path)
    assert c["unreadable_rows"] == {"bad_json": 1, "missing_field": 1}
    assert c["duplicates_dropped"] == 1 and c["documents_empty"] == 1 and c["documents_kept"] == 3
    assert any("c.jsonl:2" in ex for ex in c["problem_examples"])


def test_jsonl_missing_field_everywhere_names_fields(tmp_path, vocab_dir, capsys) -> None:
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"title": "标题", "content": "内容"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert pack(tmp_path, vocab_dir, "jsonl", f, "--text_field", "text") == 2
    assert "it has fields ['content', 'title']" in capsys.readouterr().err


def test_csv_missing_column_names_columns(tmp_path, vocab_dir, capsys) -> None:
    f = tmp_path / "c.csv"
    f.write_text("headline,label\n标题,1\n", encoding="utf-8")
    assert pack(tmp_path, vocab_dir, "csv", f, "--text_field", "text") == 2
    assert "it has columns ['headline', 'label']" in capsys.readouterr().err


def test_yacnd_and_bad_csv_rows(tmp_path, vocab_dir) -> None:
    f = tmp_path / "news_collection.csv"
    with f.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["title", "desc", "image", "url", "source", "date"])
        for t in HEADLINES["科技"] + HEADLINES["科技"][:1]:
            w.writerow([t, t + "，详细内容见正文。", "", "http://x", "新华网", "20200101"])
        w.writerow(["坏行", "只有两列"])
    assert pack(tmp_path, vocab_dir, "yacnd", f, "--val_fraction", "0") == 0
    c = corpus(tmp_path)
    assert c["documents_read"] == 3 and c["duplicates_dropped"] == 1 and c["unreadable_rows"] == {"bad_csv_row": 1}
    docs = list(read_documents(ReaderConfig("yacnd", f), ReadStats()))
    assert docs[0].text == HEADLINES["科技"][0] + "\n" + HEADLINES["科技"][0] + "，详细内容见正文。"


def test_yacnd_wrong_header(tmp_path, vocab_dir, capsys) -> None:
    f = tmp_path / "news_collection.csv"
    f.write_text("标题,描述\n甲,乙\n", encoding="utf-8")
    assert pack(tmp_path, vocab_dir, "yacnd", f) == 2
    assert "['title', 'desc']" in capsys.readouterr().err


def test_missing_input_and_tokenizer(tmp_path, vocab_dir, capsys) -> None:
    assert pack(tmp_path, vocab_dir, "jsonl", tmp_path / "nope.jsonl") == 2
    assert "nope.jsonl: no such file or directory" in capsys.readouterr().err
    assert pack(tmp_path, vocab_dir, "jsonl", None) == 2
    assert "--input is required" in capsys.readouterr().err
    f = tmp_path / "a.txt"
    f.write_text("一\n", encoding="utf-8")
    assert main(["pack", "--format", "text", "--input", str(f), "--output", str(tmp_path / "o"),
                 "--tokenizer_path", str(tmp_path / "no_vocab")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_config_collects_every_problem(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"--max_seq_length 4.*\n.*--val_fraction 1.5.*\n.*--workers 0"):
        PackConfig(ReaderConfig("inews"), tmp_path, "x", max_seq_length=4, val_fraction=1.5, workers=0)


def test_refuses_finished_or_foreign_output(tmp_path, vocab_dir, capsys) -> None:
    f = tmp_path / "a.txt"
    f.write_text("\n".join(HEADLINES["体育"]) + "\n", encoding="utf-8")
    assert pack(tmp_path, vocab_dir, "text", f) == 0
    assert pack(tmp_path, vocab_dir, "text", f) == 2
    assert "already holds a finished dataset" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.md").write_text("x")
    assert pack(tmp_path, vocab_dir, "text", f, out="foreign") == 2
    assert "not a data_tools dataset" in capsys.readouterr().err


@pytest.mark.parametrize("fmt,suffix", [("csv", ".csv"), ("jsonl", ".jsonl")])
def test_empty_and_binary_files_in_a_directory_are_counted_not_fatal(tmp_path, vocab_dir, fmt, suffix) -> None:
    d = tmp_path / "in"
    d.mkdir()
    if fmt == "csv":
        (d / "a.csv").write_text("text\n" + "\n".join(HEADLINES["体育"]) + "\n", encoding="utf-8")
    else:
        (d / "a.jsonl").write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in HEADLINES["体育"]),
                                   encoding="utf-8")
    (d / f"b{suffix}").write_bytes(b"")
    (d / f"c{suffix}").write_bytes(b"PK\x03\x04\x00\x00binary\x00" * 10)
    assert pack(tmp_path, vocab_dir, fmt, d, "--val_fraction", "0") == 0
    c = corpus(tmp_path)
    assert c["empty_files"] == 1 and c["binary_files_skipped"] == 1 and c["files_read"] == 1
    assert c["documents_kept"] == 3


def test_directory_without_files_of_the_format_names_what_it_holds(tmp_path, vocab_dir, capsys) -> None:
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a.json", "b.json", "notes.md"):
        (d / name).write_text("{}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no \.txt files for --format text \(it holds 2 \.json, 1 \.md\)"):
        check_input(ReaderConfig("text", d))
    with pytest.raises(ValueError, match=r"no \.csv files for --format yacnd \(it holds 2 \.json"):
        check_input(ReaderConfig("yacnd", d))
    assert pack(tmp_path, vocab_dir, "text", d) == 2
    assert "no .txt files for --format text" in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_nothing_packed_raises_with_counts_and_writes_no_manifest(tmp_path, vocab_dir) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.txt").write_text("\u3000\u3000\n  \n", encoding="utf-8")  # only whitespace: empty after normalisation
    (d / "b.txt").write_bytes(b"")
    (d / "c.txt").write_bytes(b"\x00binary" * 10)
    cfg = PackConfig(ReaderConfig("text", d), tmp_path / "out", str(vocab_dir), max_seq_length=32)
    with pytest.raises(ValueError, match=r"no documents packed: .* gave 2 documents: 2 empty after normalisation, "
                                         r"0 duplicates; files read 1, empty 1, binary skipped 1"):
        run_pack(cfg)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_thucnews_counts_per_category(tmp_path, vocab_dir, capsys) -> None:
    root = make_thucnews(tmp_path / "THUCNews")
    dup = root / "体育" / "10.txt"
    (root / "体育" / "20.txt").write_bytes(dup.read_bytes())  # an exact duplicate: read, not kept
    (root / "科技" / "30.txt").write_text("\u3000\u3000\n\u3000\u3000\n", encoding="utf-8")  # empty after normalisation
    assert pack(tmp_path, vocab_dir, "thucnews", root, "--val_fraction", "0.3") == 0
    c = corpus(tmp_path)
    assert c["categories"] == {"体育": {"read": 4, "kept": 3}, "科技": {"read": 3, "kept": 2},
                               "财经": {"read": 3, "kept": 3}}
    assert sum(v["kept"] for v in c["categories"].values()) == c["documents_kept"]
    err = capsys.readouterr().err
    assert "category 体育: documents read / kept" in err and "4 / 3" in err
    assert main(["inspect", str(tmp_path / "out")]) == 0
    assert "category 科技: documents read / kept" in capsys.readouterr().err
    # kept counts survive a resume (the reader re-counts what it reads)
    kept = Counters(documents_kept=3, category_kept=Counter({"体育": 3}), unk_chars=Counter({"龘": 1}))
    assert Counters.from_state(json.loads(json.dumps(kept.to_state()))) == kept
    # other formats have no categories
    f = tmp_path / "a.txt"
    f.write_text("\n".join(HEADLINES["体育"]) + "\n", encoding="utf-8")
    assert pack(tmp_path, vocab_dir, "text", f, out="plain") == 0
    assert "categories" not in read_manifest(tmp_path / "plain").corpus


def _jsonl_bytes(docs: list[str]) -> bytes:
    return "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")


def test_compressed_globbed_and_nested_inputs_read_the_same_documents_as_plain_jsonl(zh_docs, vocab_dir, tmp_path):
    import bz2
    import gzip
    import lzma

    import zstandard

    docs = zh_docs[:60]
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(_jsonl_bytes(docs))
    want = [d.text for d in read_documents(ReaderConfig(format="jsonl", input=plain), ReadStats())]
    nested = tmp_path / "crawl" / "2026" / "12"
    nested.mkdir(parents=True)
    quarters = [docs[:15], docs[15:30], docs[30:45], docs[45:]]
    for (name, compress), part in zip((("a.jsonl.gz", gzip.compress), ("b.jsonl.bz2", bz2.compress),
                                       ("c.jsonl.xz", lzma.compress), ("d.jsonl.zst", zstandard.compress)), quarters):
        (nested / name).write_bytes(compress(_jsonl_bytes(part)))
    (tmp_path / "crawl" / "notes.md").write_text("not corpus", encoding="utf-8")
    for inp in (tmp_path / "crawl", tmp_path / "crawl" / "**" / "*.jsonl.*"):  # a directory, read recursively; a glob
        stats = ReadStats()
        assert [d.text for d in read_documents(ReaderConfig(format="jsonl", input=inp), stats)] == want, inp
        assert stats.files_read == 4
    # Pack reads them alike: the same shards as from the plain file.
    assert pack(tmp_path, vocab_dir, "jsonl", plain, out="from_plain") == 0
    assert pack(tmp_path, vocab_dir, "jsonl", tmp_path / "crawl", out="from_crawl") == 0
    a, b = (read_manifest(tmp_path / o) for o in ("from_plain", "from_crawl"))
    assert [s.sha256 for s in a.splits["train"].shards] == [s.sha256 for s in b.splits["train"].shards]
    assert a.splits["train"].documents == b.splits["train"].documents > 0


def test_a_glob_that_matches_nothing_is_named(tmp_path, vocab_dir, capsys) -> None:
    assert pack(tmp_path, vocab_dir, "jsonl", tmp_path / "*.jsonl.gz") == 2
    assert "the pattern matches no file" in capsys.readouterr().err


def test_parquet_and_a_datasets_directory_read_the_same_documents_as_plain_jsonl(zh_docs, vocab_dir, tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = zh_docs[:50]
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(_jsonl_bytes(docs))
    want = [d.text for d in read_documents(ReaderConfig(format="jsonl", input=plain), ReadStats())]
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    for i, part in enumerate((docs[:30], docs[30:])):  # two files, small row groups: read batch by batch
        pq.write_table(pa.table({"id": list(range(len(part))), "text": part}), pq_dir / f"part-{i}.parquet",
                       row_group_size=7)
    hf_dir = tmp_path / "hf"
    datasets.Dataset.from_dict({"text": docs, "label": [0] * len(docs)}).save_to_disk(str(hf_dir), num_shards=2)
    for fmt, inp in (("parquet", pq_dir), ("parquet", pq_dir / "part-*.parquet"), ("hf", hf_dir)):
        stats = ReadStats()
        assert [d.text for d in read_documents(ReaderConfig(format=fmt, input=inp), stats)] == want, (fmt, inp)
    with pytest.raises(ValueError, match=r"column\(s\) \['body'\] \(--text_field\) not in the file"):
        check_input(ReaderConfig(format="parquet", input=pq_dir, text_field=("body",)))
    with pytest.raises(ValueError, match="not a `datasets` directory written by save_to_disk"):
        check_input(ReaderConfig(format="hf", input=pq_dir))
    assert pack(tmp_path, vocab_dir, "hf", hf_dir, out="from_hf") == 0
    assert read_manifest(tmp_path / "from_hf").splits["train"].documents > 0


def test_fsspec_urls_read_the_same_documents_as_plain_jsonl(zh_docs, vocab_dir, tmp_path, capsys):
    """Remote inputs through fsspec: an in-memory filesystem stands for object storage (the same code path as s3://,
    which only differs in the filesystem package), and file:// for a shared mount."""
    import gzip

    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    docs = zh_docs[:40]
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(_jsonl_bytes(docs))
    want = [d.text for d in read_documents(ReaderConfig(format="jsonl", input=plain), ReadStats())]
    mem = fsspec.filesystem("memory")
    root = f"/crawl-{tmp_path.name}"
    mem.pipe(f"{root}/2026/a.jsonl.gz", gzip.compress(_jsonl_bytes(docs[:20])))
    mem.pipe(f"{root}/2026/b.jsonl.zst", zstandard.compress(_jsonl_bytes(docs[20:30])))
    mem.pipe(f"{root}/c.jsonl", _jsonl_bytes(docs[30:]))
    mem.pipe(f"{root}/notes.md", b"not corpus")
    for url in (f"memory://{root}", f"memory://{root}/**/*.jsonl*", f"file://{plain}"):
        stats = ReadStats()
        got = [d.text for d in read_documents(ReaderConfig(format="jsonl", input=url), stats)]
        assert sorted(got) == sorted(want) and len(got) == len(want), url
    # sorted by path: 2026/a, 2026/b, then c -- the order of a local directory with the same layout
    assert [d.text for d in read_documents(ReaderConfig(format="jsonl", input=f"memory://{root}"), ReadStats())] == want
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": docs}), buf, row_group_size=9)
    mem.pipe(f"{root}-pq/part-0.parquet", buf.getvalue())
    assert [d.text for d in read_documents(ReaderConfig(format="parquet", input=f"memory://{root}-pq"), ReadStats())] == want

    # pack from the URL: the same shards as from the local file, and the URL recorded as given
    assert pack(tmp_path, vocab_dir, "jsonl", plain, out="from_plain") == 0
    assert pack(tmp_path, vocab_dir, "jsonl", f"memory://{root}", out="from_url") == 0
    a, b = (read_manifest(tmp_path / o) for o in ("from_plain", "from_url"))
    assert [s.sha256 for s in a.splits["train"].shards] == [s.sha256 for s in b.splits["train"].shards]
    assert b.source["input"] == f"memory://{root}"

    assert pack(tmp_path, vocab_dir, "jsonl", "memory:///nothing-here", out="none") == 2
    assert "--input memory:///nothing-here: no .jsonl or .json file there" in capsys.readouterr().err
    assert pack(tmp_path, vocab_dir, "thucnews", f"memory://{root}", out="thuc") == 2
    assert "--format thucnews reads a local directory" in capsys.readouterr().err
