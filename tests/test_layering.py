"""The layers of docs/architecture.md hold: apps on top, data_tools and the core beside each other, the
shared format at the bottom. Read from the source (every import statement, also those inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SHARED = {"roberta_ds", "roberta_ds.shard_format", "roberta_ds.tokenizer", "roberta_ds.cli_args", "roberta_ds.owned_dir"}
"""The bottom layer: the shard format and manifest, the tokenizer's identity, config-generated command lines, output
directories that refuse files we did not write."""


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from roberta_ds import sanity`
    return found


def modules(package: str) -> dict[str, set[str]]:
    return {f"{package}.{p.stem}" if p.stem != "__init__" else package: imports(p)
            for p in sorted((ROOT / package).glob("*.py"))}


def ours(names: set[str], prefix: str) -> set[str]:
    return {n for n in names if n == prefix or n.startswith(prefix + ".")}


def test_the_core_never_imports_data_tools():
    bad = {m: ours(i, "data_tools") for m, i in modules("roberta_ds").items() if ours(i, "data_tools")}
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
    files = [p for d in ("roberta_ds", "data_tools", "launcher", "bench") for p in (ROOT / d).glob("*.py")]
    bad = {str(p.relative_to(ROOT)): ours(imports(p), "launcher") for p in files if ours(imports(p), "launcher")}
    assert bad == {}


def test_only_the_launcher_imports_the_commands():
    # roberta_ds/commands/ is the apps layer inside the package (console scripts need an importable module)
    files = [p for d in ("roberta_ds", "data_tools", "bench") for p in (ROOT / d).glob("*.py")]
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
