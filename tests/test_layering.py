"""The layers of docs/architecture.md hold: apps on top, data_tools and the core beside each other, the
shared format at the bottom. Read from the source (every import statement, also those inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SHARED = {"roberta_ds", "roberta_ds.shard_format", "roberta_ds.tokenizer", "roberta_ds.cli_args", "roberta_ds.owned_dir"}
"""The bottom layer: the shard format and manifest, the tokenizer's identity, config-generated command lines, output
directories that refuse files we did not write."""


def imports(path: Path) -> set[str]:
    return imports_in(ast.parse(path.read_text(encoding="utf-8")))


def imports_in(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from roberta_ds import sanity`
    return found


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> dict[str, set[str]]:
    """Every module of the package, its subpackages included, and what it imports (also inside functions)."""
    return {module_name(p): imports(p) for p in sorted((ROOT / package).rglob("*.py"))}


LAYERS = {"roberta_ds.reading": 1, "roberta_ds.training": 2, "roberta_ds.reports": 3, "roberta_ds.downstream": 3,
          "roberta_ds.commands": 4}
"""The core's subpackages, bottom to top (docs/architecture.md); the shared modules (SHARED) are layer 0. A module
imports from its own subpackage and from lower layers only; reports and downstream use, on one layer, not each
other."""


def layer(module: str) -> tuple[int, str]:
    for pkg, n in LAYERS.items():
        if module == pkg or module.startswith(pkg + "."):
            return n, pkg
    return 0, "roberta_ds"


def test_the_subpackages_import_only_downwards():
    core = modules("roberta_ds")
    assert set(LAYERS) <= set(core), "a subpackage is missing: update LAYERS and docs/architecture.md"
    bad = {}
    for m, names in core.items():
        n, pkg = layer(m)
        for target in ours(names, "roberta_ds"):
            if target not in core and target.rpartition(".")[0] in core:
                target = target.rpartition(".")[0]  # `from roberta_ds.training import records`: the module's name
            tn, tpkg = layer(target)
            if target in core and tpkg != pkg and (tn > n or (tn == n and tn > 0)):
                bad.setdefault(m, set()).add(target)
    assert bad == {}
    assert {m for m in core if layer(m)[0] == 0} == SHARED, "a module outside the subpackages: give it one"


def test_the_layer_check_catches_an_upward_import(tmp_path):
    # a training module importing a report, even lazily, is an upward import
    assert layer("roberta_ds.training.trainer")[0] < layer("roberta_ds.reports.report")[0]
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from roberta_ds.reports import report\n")
    assert "roberta_ds.reports.report" in imports(f)


def ours(names: set[str], prefix: str) -> set[str]:
    return {n for n in names if n == prefix or n.startswith(prefix + ".")}


def test_the_core_never_imports_data_tools():
    # the commands are the apps layer: they compose data_tools and the core (the probe reads labelled data)
    bad = {m: ours(i, "data_tools") for m, i in modules("roberta_ds").items()
           if ours(i, "data_tools") and not m.startswith("roberta_ds.commands")}
    assert bad == {}


def test_data_tools_uses_only_the_shared_layer_of_roberta_ds():
    core = {n for n in modules("roberta_ds")} - SHARED
    bad = {m: ours(i, "roberta_ds") & core for m, i in modules("data_tools").items() if ours(i, "roberta_ds") & core}
    assert bad == {}


def test_the_shared_layer_imports_nothing_above_it():
    shared = {m: i for m, i in modules("roberta_ds").items() if m in SHARED}
    assert set(shared) == SHARED, "a shared module is missing: update SHARED and docs/architecture.md"
    core = set(modules("roberta_ds")) - SHARED
    bad = {m: (ours(i, "roberta_ds") & core) | ours(i, "data_tools") for m, i in shared.items()
           if (ours(i, "roberta_ds") & core) or ours(i, "data_tools")}
    assert bad == {}


def test_nothing_imports_the_launcher():
    files = [p for d in ("roberta_ds", "data_tools", "launcher", "bench") for p in (ROOT / d).rglob("*.py")]
    bad = {str(p.relative_to(ROOT)): ours(imports(p), "launcher") for p in files if ours(imports(p), "launcher")}
    assert bad == {}


def test_only_the_launcher_imports_the_commands():
    # roberta_ds/commands/ is the apps layer inside the package (console scripts need an importable module)
    files = [p for d in ("roberta_ds", "data_tools", "bench") for p in (ROOT / d).rglob("*.py")
             if "commands" not in p.relative_to(ROOT).parts]
    bad = {str(p.relative_to(ROOT)): ours(imports(p), "roberta_ds.commands") for p in files
           if ours(imports(p), "roberta_ds.commands")}
    assert bad == {}
    shims = {p.stem: imports(p) for p in (ROOT / "launcher").glob("*.py")}
    assert set(shims) == {p.stem for p in (ROOT / "roberta_ds" / "commands").glob("*.py")} - {"__init__"}
    assert all(f"roberta_ds.commands.{name}.main" in i for name, i in shims.items())


def test_the_checker_sees_imports_inside_functions(tmp_path):
    # A lazy import is still a dependency: the test above must not miss it.
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from data_tools.readers import ReaderConfig\n    import launcher.pretrain\n")
    assert {"data_tools.readers", "launcher.pretrain"} <= imports(f)


# ---------------------------------------------------------------------------- training/, grouped by concern
TRAINING_GROUPS = {"roberta_ds.training.run_files": 0, "roberta_ds.training.model": 1, "roberta_ds.training.engine": 2,
                   "roberta_ds.training.loop": 3, "roberta_ds.training.observe": 4}
"""training/'s groups, bottom to top (docs/architecture.md): the run directory's names; the model; DeepSpeed (the
JSON, the engine, launch variables, checkpoints); when the loop acts; what the run measured and shows. The
assembly (config, build, trainer) is above them all. A module imports only its own group and the groups below."""
ASSEMBLY = {"roberta_ds.training", "roberta_ds.training.config", "roberta_ds.training.build", "roberta_ds.training.trainer"}


def training_group(module: str) -> int:
    for pkg, n in TRAINING_GROUPS.items():
        if module == pkg or module.startswith(pkg + "."):
            return n
    assert module in ASSEMBLY, f"{module} is in no group of training/: move it into one (or update TRAINING_GROUPS)"
    return len(TRAINING_GROUPS)


def runtime_imports(path: Path) -> set[str]:
    """imports(), less those under ``if TYPE_CHECKING:`` (annotations only: the view is typed with the assembly's
    PretrainRun without depending on it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    return imports_in(tree)


def test_training_groups_import_only_downwards():
    mods = {module_name(p): p for p in sorted((ROOT / "roberta_ds" / "training").rglob("*.py"))}
    bad = {}
    for m, path in mods.items():
        g = training_group(m)
        for target in ours(runtime_imports(path), "roberta_ds.training"):
            if target not in mods and target.rpartition(".")[0] in mods:
                target = target.rpartition(".")[0]
            if target in mods and training_group(target) > g:
                bad.setdefault(m, set()).add(target)
    assert bad == {}


def test_the_group_check_catches_an_upward_and_an_ungrouped_module(tmp_path):
    assert training_group("roberta_ds.training.loop.cadence") < training_group("roberta_ds.training.observe.records")
    assert training_group("roberta_ds.training.engine.checkpoint") < training_group("roberta_ds.training.loop.schedule")
    with pytest.raises(AssertionError, match="in no group"):
        training_group("roberta_ds.training.flat_module")
    f = tmp_path / "m.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from roberta_ds.training.build import X\n"
                 "from roberta_ds.training.loop import cadence\n")
    assert ours(runtime_imports(f), "roberta_ds.training") == {"roberta_ds.training.loop",
                                                                "roberta_ds.training.loop.cadence"}


def test_the_command_line_is_built_without_torch():
    # every component's settings (training/config.py, loop/settings.py, model/settings.py, masking) are import-light:
    # --help and a settings error answer before the seconds of importing torch, DeepSpeed and transformers
    import subprocess
    import sys

    code = ("import sys\nimport roberta_ds.commands.pretrain as p\np.parse_args(['--ds_config', 'x.json', "
            "'--output_dir', 'o', '--data_dir', '.'])\nprint(sorted(m for m in ('torch', 'deepspeed', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
