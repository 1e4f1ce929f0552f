"""Preemption: SIGTERM (SLURM, Kubernetes) or SIGUSR1 (SLURM's --signal, ahead of the time limit) asks the
run to stop; the loop finishes the current step, saves a complete checkpoint and exits with EXIT_REQUEUE.

The handler only records the request: everything else happens in the training loop at a step boundary,
where all ranks agree (an all-reduce every collective.AGREE_STEPS steps on several ranks), so no rank saves alone
and no collective is left waiting. A second signal while the checkpoint is written is noted and ignored,
so it cannot cut the save short (SIGKILL still can: resume then picks the newest complete checkpoint).
"""

from __future__ import annotations

import signal
import sys
import threading

from roberta_ds.training.engine.collective import AGREE_STEPS, any_rank

SIGNALS = ("SIGTERM", "SIGUSR1")
EXIT_REQUEUE = 75
"""Exit status of a preempted run that saved its checkpoint (EX_TEMPFAIL): requeue the job and it resumes."""


class StopRequest:
    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous = {}

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signal handlers live on the main thread
            for name in SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is None:
            self.signal_name = name
            print(f"received {name}: finishing this step, saving a checkpoint, then exiting with status "
                  f"{EXIT_REQUEUE} (requeue the job to resume)", file=sys.stderr, flush=True)
        else:
            print(f"received {name} again: already stopping, the checkpoint is being saved", file=sys.stderr,
                  flush=True)

    def agreed(self, step: int, world: int) -> bool:
        """Whether the run stops after ``step``: on one rank, as soon as a signal came; on several, when any
        rank got one, checked every AGREE_STEPS steps so that all ranks stop after the same step."""
        if world == 1:
            return self.signal_name is not None
        if step % AGREE_STEPS:
            return False
        return any_rank(self.signal_name is not None)
