"""The commands users run: one module per command, each a table of contents (parse the config, build, run,
write results); the work lives in the core below them (docs/architecture.md).

Each is reachable three ways: the console script ``pip install -e .`` puts on PATH (``roberta-ds-NAME``), the
script in ``launcher/`` (``python launcher/NAME.py``, also from a checkout that was never installed), and
``python -m roberta_ds.commands.NAME``. Training on several processes goes through DeepSpeed's launcher, which
needs a script: ``deepspeed [--num_gpus N] launcher/pretrain.py`` (or ``deepspeed --module
roberta_ds.commands.pretrain``); ``roberta-ds-pretrain`` runs one process.
"""

from __future__ import annotations

import sys
from pathlib import Path

LAUNCHER_FORM = {"pretrain": "deepspeed launcher/pretrain.py", "evaluate": "python launcher/evaluate.py",
                 "export": "python launcher/export.py", "report": "python launcher/report.py",
                 "probe": "python launcher/probe.py", "check_clients": "python launcher/check_clients.py"}
"""How each command is written in the README and in --help when it was not started by its console script."""


def prog(name: str) -> str:
    """The command's name in its --help usage line: how the user started it."""
    invoked = Path(sys.argv[0]).name
    return invoked if invoked == f"roberta-ds-{name.replace('_', '-')}" else LAUNCHER_FORM[name]
