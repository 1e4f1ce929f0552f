"""`data_tools near-dups --executor local|slurm`: the near-duplicate pass at crawl scale, on datatrove's MinHash
stages and executors (LocalPipelineExecutor; SlurmPipelineExecutor job arrays with their dependencies).

    stage 1  signatures  (--tasks tasks)  the corpus' files, task i reading files i, i+tasks, ...: normalised, empty
                                          documents left out, the pack's quality filters as datatrove filter steps
                                          (data_tools.steps.datatrove_filters), then the inline pass's
                                          MinHash of the rest (rensa, character 5-grams, 128 permutations) in 16 bands
                                          of 8; datatrove's MinhashDedupSignature writes each band's sorted
                                          signatures, and this stage also writes, per document, its full signature
                                          (512 bytes) and its key (file, record, content hash) to disk
    stage 2  buckets     (16 tasks)       datatrove's MinhashDedupBuckets: the pairs that share a band
    stage 3  clusters    (1 task)         each pair's estimated Jaccard similarity from the full signatures on disk
                                          (read record by record), pairs at or above the threshold joined (union-find);
                                          in each cluster the document first in the input (file, record) stays and
                                          every other one's content hash goes to the drop list, except exact copies of
                                          the one that stays (listed by place in exact_copies.u64: the pack's exact
                                          dedup drops them, and `pack --part_by files` parts by that list)

The drop list is the one `pack --drop_list` reads (data_tools.near_dedup.DropList). No stage holds a per-document
index in memory: stage 1 holds one task's band at a time to sort it (36 bytes per document of the task), stage 2
streams sorted files, stage 3 holds the keys and union-find of the documents in candidate pairs (about 100 bytes
each), reading their records from disk with pread (bench/README.md, "Near-duplicates on datatrove"). What differs from the in-process pass (--executor inline, rensa): a document is dropped when it is
in a cluster of pairs at the threshold, not only when it is close to a document kept before it, so a chain A~B~C
with A and C apart drops both B and C here, and B only there.

Killed? Run the same command again: datatrove skips the tasks it finished (their completion files in
OUTPUT/.datatrove/logs) and reruns the others from the start of their files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_tools import near_dedup
from data_tools.dt_executors import chain, require_datatrove
from data_tools.quality import comparable
from data_tools.steps import datatrove_filters, filter_counts
from data_tools.near_dedup import (BANDS, DROP_HASHES, DROP_INFO, EXACT_COPIES, NGRAM, NUM_PERM, SEED,
                                    copy_key, near_dedup_settings)

WORK = ".datatrove"
"""Under --output: the stages' files (signatures, pairs) and datatrove's logs and completion files."""
ROWS = NUM_PERM // BANDS
KEY = np.dtype([("file", "<u4"), ("record", "<u8"), ("hash", "<u8")])
"""Per document of a stage-1 task, in its order: the input file's index (in the sorted file list), the document's
number within that file, and its content hash (tokenize_worker.doc_hash of the normalised text)."""
def minhash_config():
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.utils.hashing import HashConfig

    return MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS, seed=SEED,
                         hash_config=HashConfig(precision=32, hash_fc="sha1"))


def _steps():
    """The datatrove step classes, built on first use (datatrove is imported only when an executor runs)."""
    from datatrove.data import Document
    from datatrove.pipeline.base import PipelineStep
    from datatrove.io import get_datafolder
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    class CorpusDocuments(PipelineStep):
        """Reader: this task's share of the corpus, read by data_tools.readers (every format, compression, URLs) and
        normalised as a pack does; empty documents are counted, not passed on. Each document carries its place in
        the input as its id, its raw text and its content hash in its metadata (for the filters and the keys)."""

        name = "roberta-ds corpus"
        type = "📖 - READER"

        def __init__(self, reader, normalize: bool, counts_dir: str):
            super().__init__()
            self.reader, self.normalize, self.counts_dir = reader, normalize, counts_dir

        def run(self, data=None, rank: int = 0, world_size: int = 1):
            from data_tools import readers
            from data_tools.normalize import normalize
            from data_tools.tokenize_worker import doc_hash

            stats = readers.ReadStats()
            if readers.input_files(self.reader):
                placed = readers.share_documents(self.reader, rank, world_size, stats)
            else:  # thucnews, hf, inews: every task reads everything and keeps every world_size-th document
                placed = ((d, (0, n)) for n, d in enumerate(readers.read_documents(self.reader, stats))
                          if n % world_size == rank)
            empty = 0
            for doc, (file_index, record) in placed:
                text, _ = normalize(doc.text, self.normalize)
                if not text:
                    empty += 1
                    self.stat_update("empty")
                    continue
                self.stat_update("documents")
                yield Document(text=text, id=f"{file_index}/{record}",
                               metadata={"raw": doc.text, "file": file_index, "record": record, "hash": doc_hash(text)})
            Path(self.counts_dir).mkdir(parents=True, exist_ok=True)
            counts = {"documents_read": stats.documents_read, "empty": empty, "reading": stats.to_dict()}
            (Path(self.counts_dir) / f"{rank:05d}.read.json").write_text(json.dumps(counts), encoding="utf-8")

    class CharMinhashSignature(MinhashDedupSignature):
        """datatrove's stage 1 with the inline pass's MinHash: rensa's, over character 5-grams (Chinese has no words
        to make shingles of; data_tools.near_dedup.shingles), 128 permutations, seed 42, split into 16 bands of 8.
        Each document's whole signature is also written to disk (128 uint32, by document) for stage 3's check."""

        name = "🎯 MinHash signatures (character 5-grams)"

        def __init__(self, output_folder: str, full_dir: str, keys_dir: str):
            # MinhashDedupSignature.__init__, less its word tokenizer (spaCy; these shingles are characters)
            PipelineStep.__init__(self)
            self.output_folder = get_datafolder(output_folder)
            self.config = minhash_config()
            self.num_hashes = self.config.num_buckets * self.config.hashes_per_bucket
            self._parameters = None
            self._hash_func = None
            self.language, self.word_tokenizer, self.skip_existing_sigs = None, None, False
            self.full_dir, self.keys_dir = full_dir, keys_dir
            self._full = None

        def get_shingles(self, text: str) -> np.ndarray:
            return np.array(near_dedup.shingles(text), dtype=object)

        def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
            from rensa import RMinHash

            m = RMinHash(NUM_PERM, SEED)
            m.update(shingles.tolist())
            sig = np.asarray(m.digest(), dtype="<u4")
            self._full.write(sig.tobytes())  # called once per document, in order (the parent's run)
            return [band.tolist() for band in np.split(sig, BANDS)]

        def run(self, data, rank: int = 0, world_size: int = 1):
            def keyed(keys):  # each document's key, in the order its signature is written (streamed)
                for doc in data:
                    m = doc.metadata
                    keys.write(np.array([(m["file"], m["record"], m["hash"])], dtype=KEY).tobytes())
                    yield doc

            for d in (self.full_dir, self.keys_dir):
                Path(d).mkdir(parents=True, exist_ok=True)
            with ((Path(self.full_dir) / f"{rank:05d}.sig").open("wb") as self._full,
                  (Path(self.keys_dir) / f"{rank:05d}.keys").open("wb") as keys):
                super().run(keyed(keys), rank, world_size)

    return CorpusDocuments, CharMinhashSignature


def cluster_step(root: str, threshold: float, options: dict, output: str, reasons: tuple[str, ...]):
    """Stage 3 as a datatrove step: the pairs of stage 2 checked against the threshold, clustered, the drop list
    written."""
    from datatrove.pipeline.base import PipelineStep
    from datatrove.utils.binaryio import read_tuples_from_file

    class Clusters(PipelineStep):
        name = "🔗 verified clusters -> drop list"
        type = "🫂 - DEDUP"

        def run(self, data=None, rank: int = 0, world_size: int = 1):
            work = Path(root)
            # read record by record from disk (pread), never mapped: only the documents of candidate pairs are read,
            # and nothing of the others becomes resident (a memory map made whole pages of the signatures resident,
            # 8 documents each: 490 bytes per document of the corpus at 5 % duplicates)
            tasks = sorted(int(p.stem) for p in (work / "keys").glob("*.keys"))
            keys = {t: _Records(work / "keys" / f"{t:05d}.keys", KEY) for t in tasks}
            sigs = {t: _Records(work / "full" / f"{t:05d}.sig", np.dtype(("<u4", NUM_PERM))) for t in tasks}
            parent: dict[tuple[int, int], tuple[int, int]] = {}
            key_of: dict[tuple[int, int], np.void] = {}  # per document in a pair: memory per duplicate

            def key(node):
                if node not in key_of:
                    key_of[node] = keys[node[0]][node[1]]
                return key_of[node]

            def order(node):  # the document's place in the input: the cluster keeps the first
                k = key(node)
                return int(k["file"]), int(k["record"])

            def find(x):
                while parent.get(x, x) != x:
                    parent[x] = parent.get(parent[x], parent[x])
                    x = parent[x]
                return x

            pairs = checked = 0
            for f in sorted((work / "buckets").glob("*.dups")):
                with f.open("rb") as fh:
                    for t1, d1, t2, d2 in read_tuples_from_file(fh, "I", "I", "I", "I", lines_to_buffer=4096):
                        pairs += 1
                        a, b = (t1, d1), (t2, d2)
                        ra, rb = find(a), find(b)
                        if ra == rb:
                            continue
                        checked += 1
                        if float(np.mean(sigs[t1][d1] == sigs[t2][d2])) < threshold:  # rensa's estimated Jaccard
                            continue
                        first, other = (ra, rb) if order(ra) <= order(rb) else (rb, ra)
                        parent[other] = first
                        parent.setdefault(first, first)
            drop, copies, examples, near = set(), [], [], 0
            for node in sorted(parent, key=order):
                root_node = find(node)
                if root_node == node:
                    continue
                h = int(key(node)["hash"])
                if h == int(key(root_node)["hash"]):
                    # an exact copy of the document kept: a pack's exact dedup drops it; parts that read only their
                    # own files (pack --part_by files) drop it by its place in the input
                    copies.append(copy_key(*order(node)))
                    continue
                near += 1
                drop.add(h)
                if len(examples) < 3:
                    examples.append({"document": _where(order(node)), "near_duplicate_of": _where(order(root_node))})
            read = [json.loads(p.read_text()) for p in sorted((work / "counts").glob("*.read.json"))]
            filtered = filter_counts(work / "counts", reasons)
            hashes = np.array(sorted(drop), dtype="<u8")
            out = Path(output)
            hashes.tofile(out / DROP_HASHES)
            np.array(sorted(copies), dtype="<u8").tofile(out / EXACT_COPIES)
            exact = len(copies)
            indexed = sum(len(k) for k in keys.values())
            for records in (*keys.values(), *sigs.values()):
                records.close()
            info = {
                "options": options,
                "near_dedup": {**near_dedup_settings(threshold),
                               "method": "datatrove MinHash stages (signatures, buckets), candidate pairs checked "
                                         "against the threshold by estimated Jaccard, clustered (union-find)"},
                "engine": "datatrove",
                "documents_read": sum(r["documents_read"] for r in read),
                "documents_indexed": indexed - near - exact,
                "documents_dropped": len(hashes),
                "drops": near,
                "drops_note": "documents in a cluster of near-duplicates other than its first; exact copies of the "
                              "first are left to the pack's exact dedup; documents_dropped counts distinct content "
                              "hashes",
                "left_out": {"empty": sum(r["empty"] for r in read), "quality filters": sum(filtered.values()),
                             "exact duplicates": exact},
                "filtered": filtered,
                "exact_copies": exact,
                "candidate_pairs": pairs, "pairs_checked": checked,
                "examples": examples,
            }
            tmp = out / (DROP_INFO + ".tmp")
            tmp.write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
            tmp.replace(out / DROP_INFO)

    return Clusters()


def _where(order: tuple[int, int]) -> dict:
    return {"file_index": order[0], "record": order[1]}


class _Records:
    """Fixed-size records of a file, each read when asked for (os.pread): nothing held or mapped."""

    def __init__(self, path: Path, dtype: np.dtype):
        import os

        self.fd, self.dtype = os.open(path, os.O_RDONLY), np.dtype(dtype)
        self._len = os.fstat(self.fd).st_size // self.dtype.itemsize

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int):
        import os

        data = os.pread(self.fd, self.dtype.itemsize, i * self.dtype.itemsize)
        return np.frombuffer(data, dtype=self.dtype)[0]

    def close(self) -> None:
        import os

        os.close(self.fd)


def executors(cfg, options: dict):
    """The three stages as datatrove executors (local or SLURM), each depending on the one before."""
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets

    CorpusDocuments, CharMinhashSignature = _steps()
    work = cfg.output / WORK
    stages = [
        ("signatures", [CorpusDocuments(cfg.reader, cfg.normalize, str(work / "counts")),
                        *datatrove_filters(cfg.quality, str(work / "counts")),
                        CharMinhashSignature(str(work / "signatures"), str(work / "full"), str(work / "keys"))],
         cfg.tasks),
        ("buckets", [MinhashDedupBuckets(input_folder=str(work / "signatures"), output_folder=str(work / "buckets"),
                                         config=minhash_config())], BANDS),
        ("clusters", [cluster_step(str(work), cfg.near_dedup_threshold, options, str(cfg.output),
                                   cfg.quality.reasons)], 1),
    ]
    return chain(stages, executor=cfg.executor, logs=work / "logs", job_prefix="near-dups", local_workers=cfg.workers,
                 slurm_partition=cfg.slurm_partition, slurm_time=cfg.slurm_time, cpus_per_task=1,
                 mem_per_cpu_gb=cfg.slurm_mem_gb)


def run_stages(cfg, console) -> dict | None:
    """Run (local) or submit (slurm) the three stages; the drop list's info once written (local), else None."""
    require_datatrove()
    from roberta_ds.owned_dir import claim_dir
    from roberta_ds.shard_format import source_stamp

    options = cfg.document_options()
    settings = {"options": options, "threshold": cfg.near_dedup_threshold, "tasks": cfg.tasks}
    work = cfg.output / WORK
    previous = work / "settings.json"
    resuming = previous.exists()
    claim_dir(cfg.output, "data_tools near-dups", {DROP_HASHES, DROP_INFO, DROP_INFO + ".tmp", EXACT_COPIES, WORK},
              flag="--output",
              what="a drop list", clean=not resuming)
    if resuming:
        before = json.loads(previous.read_text(encoding="utf-8"))
        before["options"] = comparable(before.get("options", {}))  # a pass begun before a filter existed
        now = {**settings, "options": comparable(options)}
        if before != now:
            diff = [k for k in now if before.get(k) != now[k]]
            raise ValueError(f"{cfg.output} holds an unfinished near-dups pass with other settings ({', '.join(diff)}); "
                             "re-run the original command to finish it, or choose a new --output")
        console.print(f"resuming {cfg.output}: datatrove skips the tasks it finished")
    work.mkdir(parents=True, exist_ok=True)
    previous.write_text(json.dumps(settings, ensure_ascii=False), encoding="utf-8")
    stages = executors(cfg, options)
    stages[-1].run()  # runs (or submits) the stages it depends on first
    if cfg.executor == "slurm":
        ids = ", ".join(f"{ex.job_name} {ex.job_id}" for ex in stages)
        console.print(f"near-dups: submitted SLURM jobs {ids}; the drop list appears in {cfg.output} "
                      f"({DROP_INFO}) when the last ends; logs in {work / 'logs'}")
        if not (cfg.output / DROP_INFO).exists():
            return None
    info = json.loads((cfg.output / DROP_INFO).read_text(encoding="utf-8"))
    info.update(source_stamp("data_tools near-dups"))
    (cfg.output / DROP_INFO).write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
    console.print(f"near-dups ({cfg.executor} datatrove executor, {cfg.tasks} signature task(s)): "
                  f"{info['documents_read']:,} documents read, {info['drops']:,} near-duplicates "
                  f"(Jaccard >= {cfg.near_dedup_threshold}) in clusters of {info['documents_indexed']:,} kept; left out: "
                  + ", ".join(f"{k} {v:,}" for k, v in info["left_out"].items()) + f" -> {cfg.output}")
    return info
