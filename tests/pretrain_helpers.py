"""Run the real entry points from tests: pretraining in-process (one rank), in a subprocess, or through the
deepspeed launcher; the other launcher commands in-process. One tiny-run recipe for all of them."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

from roberta_ds.training.engine import launch_env
from roberta_ds.training.observe import records

ROOT = Path(__file__).resolve().parent.parent


def launcher_module(name: str):
    """The command NAME (roberta_ds/commands/NAME.py, which launcher/NAME.py and roberta-ds-NAME run)."""
    return importlib.import_module(f"roberta_ds.commands.{name}")


def launcher_main(name: str):
    """``main`` of the command NAME."""
    return launcher_module(name).main


pretrain_main = launcher_main("pretrain")

FAST = [
    "--model_size", "tiny", "--log_steps", "1",
    "--ds", "optimizer.params.lr=2e-3", "--ds", "scheduler.params.warmup_num_steps=2",
    "--ds", "train_micro_batch_size_per_gpu=16",
]
"""The tiny-run recipe: a 2-layer model that learns within a dozen steps on the test corpus."""


def free_port() -> int:
    """A rendezvous port for the ranks a test starts: free now, and below the host's ephemeral range, so that no
    connection another test's ranks open meanwhile takes it as its local port before the ranks bind it (a port that
    bind(0) picked is in that range and was lost that way)."""
    import random
    import socket

    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ephemeral.read_text().split()[0]) if ephemeral.exists() else 32768
    # A generator of its own: in-process runs seed the global `random` with the run's seed, so two xdist workers
    # would draw the same "random" ports in the same order and both launch on the first free one (EADDRINUSE).
    for port in random.Random().sample(range(20000, low), min(200, low - 20000)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in 20000-{low}")


def pretrain_args(shards: Path, out: Path, config: str = "zero2", steps: int = 12, *extra: str) -> list[str]:
    return ["--ds_config", str(ROOT / "ds_configs" / f"{config}.json"), "--data_dir", str(shards),
            "--output_dir", str(out), "--max_steps", str(steps), *FAST, *extra]


def run_pretrain(shards: Path, out: Path, config: str = "zero2", steps: int = 12, *extra: str) -> int:
    return pretrain_main(pretrain_args(shards, out, config, steps, *extra))


def single_process_env() -> dict[str, str]:
    """This process's environment without the launcher's rank variables, so a child process starts its own
    single-process group instead of joining (or clashing with) the test process's."""
    return {k: v for k, v in os.environ.items() if k not in launch_env.TORCH_VARS}


def deepspeed_command(num_procs: int, args: list[str]) -> tuple[list[str], dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    launcher = Path(sys.executable).parent / "deepspeed"  # the console script users run
    # A port free now: two xdist workers may launch at once, and pid-derived ports collide when the pids agree mod 1000
    cmd = [str(launcher), "--num_gpus", str(num_procs),
           "--master_port", str(free_port()), str(ROOT / "launcher" / "pretrain.py"), *args]
    return cmd, env


def run_deepspeed(num_procs: int, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    cmd, env = deepspeed_command(num_procs, args)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


TINY_RUN = ("--log_steps", "4", "--eval_steps", "6", "--eval_max_sequences", "32", "--save_steps", "12")
"""The shared finished run's extras (conftest.tiny_run): windows, evaluations and one checkpoint."""


def train_tiny(data_dir: Path, out: Path) -> Path:
    """A 12-step tiny pretraining run through the pretrain command and the real DeepSpeed engine, in this process
    (the tests about processes start their own); returns the run directory."""
    assert run_pretrain(data_dir, out, "zero2", 12, *TINY_RUN) == 0
    return out


def train_records(run: Path) -> list[dict]:
    """The run's training windows (records.TrainWindow), as the dicts metrics.jsonl holds."""
    return [r.to_dict() for r in records.windows(records.read_metrics(run))]


def eval_records(run: Path) -> list[dict]:
    """The run's evaluations (records.Evaluation), as the dicts metrics.jsonl holds."""
    return [r.to_dict() for r in records.evaluations(records.read_metrics(run))]


# ----------------------------------------------------------------------------- several ranks without a launcher
# Tests about what several ranks compute (not about a launcher) start their ranks from a fork server that has
# imported torch, transformers and DeepSpeed once: each rank is a separate process with the torch.distributed
# variables a launcher sets (launch_env reads them as "environment"), without paying ~6 s of imports per rank and
# per launcher process. The launchers themselves are tested with the real deepspeed, torchrun and srun paths.

_PRELOAD = ["roberta_ds.commands.pretrain", "roberta_ds.commands.evaluate", "roberta_ds.training.build", "roberta_ds.training.trainer",
            "roberta_ds.training.observe.evaluation", "roberta_ds.training.engine.checkpoint"]
_CONTEXT = None


def _fork_context():
    global _CONTEXT
    if _CONTEXT is None:
        import multiprocessing

        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(_PRELOAD)
    return _CONTEXT


def _log_to(log: str) -> None:
    """This process's stdout and stderr, from the file descriptors up, into ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)


def _exit_after(log: str, work) -> None:
    """The end of a forked child: ``work()``'s output into ``log``, then exit with its status as a ``python``
    process would (a return value or sys.exit code; 1 and the traceback in the log for an exception)."""
    _log_to(log)
    try:
        rc = work() or 0
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException:  # noqa: BLE001 - the traceback goes to the log, the status to the parent
        import traceback

        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def _set_env(env: dict[str, str]) -> None:
    """A forked child's environment: single_process_env() (the fork server may have inherited a test's world),
    then ``env``."""
    for k in launch_env.TORCH_VARS:
        os.environ.pop(k, None)
    os.environ.update(env)


def _rank_main(command: str, argv: list[str], env: dict[str, str], log: str) -> None:
    _set_env(env)
    _exit_after(log, lambda: launcher_main(command)(argv, destroy_process_group=True))


def _code_main(code: str, argv: list[str], env: dict[str, str], log: str) -> None:
    _set_env(env)
    sys.argv = ["-c", *argv]
    _exit_after(log, lambda: exec(compile(code, "<driver>", "exec"), {"__name__": "__main__"}))


def rank_env(rank: int, num: int, port: int) -> dict[str, str]:
    """The torch.distributed variables of rank ``rank`` of ``num`` on this host, meeting on ``port``."""
    return {"RANK": str(rank), "WORLD_SIZE": str(num), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(num),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def run_code(code: str, argv: list[str], timeout: int = 300, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess:
    """What ``python -c code *argv`` does, in a process forked from the fork server (torch, transformers and the
    commands already imported, no op loaded), with single_process_env() and ``env``: its exit status (-N for a
    signal N) and its output, stdout and stderr together."""
    import tempfile

    log = Path(tempfile.mktemp(prefix="code-", suffix=".log"))
    process = _fork_context().Process(target=_code_main, args=(code, argv, env or {}, str(log)))
    process.start()
    child = Child(process)
    try:
        rc = child.wait(timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        text = log.read_text(errors="replace") if log.exists() else ""
        log.unlink(missing_ok=True)
    return subprocess.CompletedProcess(["-c", "<driver>", *argv], rc, text, text)


class Child:
    """A command's ``main()`` running in a process of its own, forked from the fork server: what the tests use of
    ``subprocess.Popen`` (pid, poll, wait, send_signal), with the same exit statuses (-N for a signal N)."""

    def __init__(self, process) -> None:
        self._process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(f"{self.pid}", timeout)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        self._process.kill()


def start_command(command: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Child:
    """``command``'s main(argv) in a new process (alone in its world unless ``env`` sets the torch.distributed
    variables), its stdout and stderr written to ``log``."""
    env = {"OMP_NUM_THREADS": "1", **(env or {})}
    process = _fork_context().Process(target=_rank_main, args=(command, argv, env, str(log)))
    process.start()
    return Child(process)


def run_ranks(num: int, argv: list[str], command: str = "pretrain", timeout: int = 600) -> subprocess.CompletedProcess:
    """``command`` (pretrain or evaluate) on ``num`` ranks of one host, one process each; returns the exit status
    (the worst rank's), rank 0's output as stdout and the other ranks' as stderr."""
    import tempfile

    port = free_port()
    logs = [Path(tempfile.mktemp(prefix=f"rank{r}-", suffix=".log")) for r in range(num)]
    procs = [start_command(command, argv, logs[r], rank_env(r, num, port)) for r in range(num)]
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
    texts = [log.read_text(errors="replace") if log.exists() else "" for log in logs]
    for log in logs:
        log.unlink(missing_ok=True)
    worst = max(codes, key=lambda c: (c != 0, abs(c or 0)))
    return subprocess.CompletedProcess(["ranks", command], worst, texts[0], "".join(texts[1:]))
