"""Shared fixtures: a tiny real Chinese corpus, a vocab built from it, shards packed from it and runs trained on
them, all through the real data_tools CLI and DeepSpeed engine (no network, no ../shared).

Expensive artefacts are built once per test run and shared read-only (``shared_artefact``): under pytest-xdist
the first worker builds each one under a file lock and the others read it. Every shared artefact is fingerprinted;
a test that writes into one fails, naming the files it changed (tests that need to write copy it first).
"""

from __future__ import annotations

import json
import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch thread per xdist worker: two workers of two threads each on two cores spin against each other
    # (the inner loop took 100 s under `-n 2` that way, 57 s with one thread each). Set before torch is imported;
    # processes the tests start inherit it, and roberta_ds keeps a set OMP_NUM_THREADS for a process alone.
    os.environ["OMP_NUM_THREADS"] = "1"

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from data_tools.cli import main as data_tools_main
from data_tools.readers import clean_inews, inews_pickles

ZH_DOCS = 400


def load_zh_docs(n: int = ZH_DOCS) -> list[str]:
    """The first n distinct non-empty inews training articles, title + content, cleaned."""
    with inews_pickles()[0].open("rb") as fh:
        titles, contents, _ = pickle.load(fh)
    docs, seen = [], set()
    for title, content in zip(titles, contents):
        doc = (clean_inews(title).strip() + "\n" + clean_inews(content).strip()).strip()
        if doc and doc not in seen:
            seen.add(doc)
            docs.append(doc)
        if len(docs) == n:
            break
    return docs


def pack_corpus(docs: list[str], out: Path, vocab: Path, *extra_args: str) -> Path:
    """Write docs as JSONL next to ``out`` and pack them through the real CLI; returns ``out``."""
    out = Path(out)
    src = out.parent / f"{out.name}.jsonl"
    src.parent.mkdir(parents=True, exist_ok=True)
    with src.open("w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    rc = data_tools_main(
        ["pack", "--format", "jsonl", "--input", str(src), "--output", str(out), "--tokenizer_path", str(vocab), *extra_args]
    )
    assert rc == 0, f"data_tools pack failed with exit code {rc}"
    return out


def _fingerprint(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


_SHARED: dict[Path, dict[str, tuple[int, int]]] = {}
"""Every shared artefact of this process and its fingerprint when it was handed out."""
_BUILT: dict[str, Path] = {}


def run_dir(factory: pytest.TempPathFactory) -> Path:
    """A directory all processes of this test run share: under xdist a folder in the run's temp root, beside each
    worker's own basetemp; serially the basetemp itself."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return factory.getbasetemp()
    root = factory.getbasetemp().parent / "shared"
    root.mkdir(exist_ok=True)
    return root


def shared_artefact(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The directory ``name`` built once for the whole test run by ``build(dir)`` and shared read-only."""
    if name in _BUILT:
        return _BUILT[name]
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = run_dir(factory)
        out, done = root / name, root / f"{name}.done"
        with FileLock(str(root / f"{name}.lock")):
            if not done.exists():
                if out.exists():  # a worker failed halfway: build again
                    import shutil

                    shutil.rmtree(out)
                out.mkdir()
                build(out)
                done.touch()
    else:
        out = factory.mktemp(name, numbered=False)
        build(out)
    _SHARED[out] = _fingerprint(out)
    _BUILT[name] = out
    return out


@pytest.fixture(autouse=True)
def _shared_artefacts_stay_unchanged(request: pytest.FixtureRequest):
    """Fail the test that wrote into a shared artefact: the tests after it would read its writes."""
    yield
    for root, before in _SHARED.items():
        after = _fingerprint(root)
        if after != before:
            _SHARED[root] = after  # blame this test only
            changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
            pytest.fail(f"{request.node.nodeid} changed the shared artefact {root} ({changed[:8]}): copy it "
                        "(shutil.copytree) before writing", pytrace=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that start several processes are slow by nature: out of the inner loop (pytest -m "not slow").
    for item in items:
        if item.get_closest_marker("multiproc"):
            item.add_marker(pytest.mark.slow)

    # Longest first, so that xdist's two workers finish together: the multi-rank tests, the other slow tests, then
    # the fast ones. The op tests go last: their ops build in the background meanwhile (OpBuilds). The order within
    # each kind is the files' order. (xdist's --dist loadgroup does not group with pytest 9.2, whose node ids no
    # longer follow the _nodeid xdist 3.8 rewrites; the multi-rank tests of the two workers may run side by side.)
    def weight(item: pytest.Item) -> int:
        if item.get_closest_marker("multiproc"):
            return 0
        if item.get_closest_marker("builds_ops"):
            return 3
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=weight)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # xdist's worksteal scheduler hands each worker one contiguous half of this list, then moves tests from the
        # tail of the longer queue to the worker that ran dry. Dealt alternately, each half holds every kind in the
        # order above, and the tails that move are the short tests.
        items[:] = items[0::2] + items[1::2]


class OpBuilds:
    """The compiled DeepSpeed ops the suite builds (the two Adam ops of the op tests; the engine setup keeps
    DeepSpeed's CPU comm layer from building its shared-memory all-reduce), built by DeepSpeed's own op builders,
    with the run's extension cache, in one background process started when the run begins (by the first xdist
    worker to get there, under a file lock). The builds (about 200 CPU-seconds on a fresh 2-core machine) run beside
    the tests instead of stopping the run when the op tests come. The op tests run last, wait for the builds and
    fail on their errors; processes that need an op meanwhile wait on torch's build lock and load what it built."""

    OPS = ("FusedAdamBuilder", "CPUAdamBuilder")
    proc = None
    """The build process, in the test process that started it."""
    log: Path | None = None

    @classmethod
    def start(cls, root: Path) -> None:
        """Start the builds unless another worker of this run has; their log and exit status go under ``root``."""
        import subprocess
        import sys

        cls.log = root / "op_builds.log"
        with FileLock(str(root / "op_builds.lock")):
            if cls.log.exists():
                return
            code = ("rc = 1\n"
                    "try:\n"
                    "    from deepspeed.accelerator import get_accelerator\n"
                    f"    for name in {cls.OPS!r}:\n"
                    "        get_accelerator().create_op_builder(name).load(verbose=False)\n"
                    "        print('built', name, flush=True)\n"
                    "    rc = 0\n"
                    "finally:\n"
                    f"    open({str(root / 'op_builds.rc')!r}, 'w').write(str(rc))\n")
            # Serially, niced: it takes the core the tests leave idle. Under xdist both cores are busy; niced, it
            # starved until the end and the op tests waited 2 minutes for it while the other worker sat idle.
            nice = 0 if os.environ.get("PYTEST_XDIST_WORKER") else 10
            with cls.log.open("w") as out:
                cls.proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT,
                                            preexec_fn=lambda: os.nice(nice))

    @classmethod
    def wait(cls, timeout: float = 1800) -> str:
        """The build's output, once it has finished; fails the calling test if any op did not build."""
        import time

        assert cls.log is not None, "the background op builds did not start"
        rc_file = cls.log.with_name("op_builds.rc")
        if cls.proc is not None:
            cls.proc.wait(timeout)
            assert rc_file.exists(), f"the op builds ended ({cls.proc.returncode}) without their status: {cls.log}"
        deadline = time.monotonic() + timeout
        while not rc_file.exists():  # started by another xdist worker
            assert time.monotonic() < deadline, f"the op builds did not finish in {timeout:.0f} s: {cls.log}"
            time.sleep(1)
        rc = rc_file.read_text()
        text = cls.log.read_text(errors="replace")
        assert rc == "0" and all(f"built {name}" in text for name in cls.OPS), f"op builds failed ({rc}): {text[-3000:]}"
        return text


def pytest_collection_finish(session: pytest.Session) -> None:
    # Only for a run that will run an op test: a run of other tests, or --collect-only (which waited 90 s for
    # builds nothing would use), does not pay for them.
    if not session.config.option.collectonly and any(i.get_closest_marker("builds_ops") for i in session.items):
        OpBuilds.start(run_dir(session.config._tmp_path_factory))


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Never leave a build half done: torch's build lock would make the next run wait on it forever.
    if OpBuilds.proc is not None:
        OpBuilds.proc.wait()


@pytest.fixture
def ops_built() -> str:
    """Waits for the background op builds (OpBuilds) and returns their output."""
    return OpBuilds.wait()


@pytest.fixture(scope="session")
def zh_docs() -> list[str]:
    return load_zh_docs()


def _build_vocab(docs: list[str], root: Path, size: int) -> Path:
    src = root / "corpus.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    out = root / "tokenizer"
    rc = data_tools_main(
        ["build-vocab", "--format", "jsonl", "--input", str(src), "--output", str(out), "--vocab_size", str(size)]
    )
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def vocab_dir(zh_docs: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_artefact(tmp_path_factory, "vocab", lambda root: _build_vocab(zh_docs, root, 4000)) / "tokenizer"


@pytest.fixture(scope="session")
def shard_dir(zh_docs: list[str], vocab_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_artefact(tmp_path_factory, "shards", lambda root: pack_corpus(
        zh_docs, root / "data", vocab_dir, "--max_seq_length", "128", "--val_fraction", "0.1", "--wwm")) / "data"


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_run(shard_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run on shard_dir (metrics.jsonl, summary.json, checkpoints/, final_model/), read-only."""
    from pretrain_helpers import train_tiny

    return shared_artefact(tmp_path_factory, "tiny_run", lambda root: train_tiny(shard_dir, root / "run")) / "run"


@pytest.fixture(scope="session")
def other_shards(zh_docs: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same documents packed with a different (smaller) vocab: for mismatch tests."""

    def build(root: Path) -> None:
        vocab = _build_vocab(zh_docs[:150], root, 2500)
        pack_corpus(zh_docs[:150], root / "data", vocab, "--max_seq_length", "128", "--val_fraction", "0.1")

    return shared_artefact(tmp_path_factory, "other", build) / "data"


TWO_RANK_ARGS = ("--dropout", "0", "--eval_steps", "4", "--eval_max_sequences", "40")
"""The 2-rank reference runs: 8 steps, no dropout (the RNG streams of different world sizes differ), evaluations."""


@pytest.fixture(scope="session")
def two_rank_run(shard_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``two_rank_run(config)``: a finished `deepspeed --num_gpus 2` run (micro batch 8, so global batch 16) with
    TWO_RANK_ARGS, built on first use and shared read-only by the tests that compare other launches with it."""
    from pretrain_helpers import pretrain_args, run_deepspeed

    def get(config: str) -> Path:
        def build(root: Path) -> None:
            args = pretrain_args(shard_dir, root / "run", config, 8, *TWO_RANK_ARGS,
                                 "--ds", "train_micro_batch_size_per_gpu=8")
            proc = run_deepspeed(2, args)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

        return shared_artefact(tmp_path_factory, f"two_ranks_{config}", build) / "run"

    return get
