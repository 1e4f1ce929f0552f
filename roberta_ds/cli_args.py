"""Command lines generated from config dataclasses: one definition per flag.

A field's name is its flag (``max_steps`` -> ``--max_steps``), its default is the flag's default, its
type the flag's type, and the docstring written under it (``field: int = 3`` then ``\"\"\"...\"\"\"``) its
``--help`` text. A nested dataclass field (``PackConfig.reader``) adds its own fields to the same
command line, unprefixed. What a type cannot say goes in ``field(metadata=cli(...))``:

    flag        another option string (``--ds`` for ``ds_overrides``, ``--no_normalize`` for ``normalize=True``)
    positional  a positional argument instead of an option
    choices     allowed values (shown in --help, checked by argparse)
    metavar     the value's name in --help

Types: bool (``False`` -> a switch; ``True`` -> ``--no_NAME`` storing False), int/float/str/Path (and
``X | None``), ``list[str]`` (repeatable option; a positional takes one or more values), ``tuple[str, ...]``
(one comma-separated value).

Validation stays in the dataclasses' ``__post_init__``; ``parse`` collects the ValueErrors of every
nested config and raises them together, so a user sees every problem at once.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CLI_KEY = "cli"


def cli(*, flag: str | None = None, positional: bool = False, choices=None, metavar: str | None = None) -> dict:
    """``field(metadata=cli(...))``: what a field's type and default do not say about its flag."""
    return {CLI_KEY: {k: v for k, v in dict(flag=flag, positional=positional, choices=choices,
                                             metavar=metavar).items() if v not in (None, False)}}


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a dataclass's fields (and its bases' fields), by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (e.g. frozen app): flags still work, without help text
            continue
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _unwrap_optional(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def csv_tuple(s: str) -> tuple[str, ...]:
    """``a, b,c`` -> ('a', 'b', 'c'): the value of a ``tuple[str, ...]`` flag."""
    return tuple(x.strip() for x in s.split(",") if x.strip())


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _shown(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return str(v)


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one argument per field of ``cls`` (recursing into nested dataclass fields); the class's own fields come
    first in --help, then those of the settings it is made of (its dataclass bases)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    own = set(cls.__dict__.get("__annotations__", {}))
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):
        if not f.init:
            continue
        tp = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):
            add_arguments(parser, tp)
            continue
        meta = f.metadata.get(CLI_KEY, {})
        default = _default(f)
        required = default is dataclasses.MISSING
        help_text = docs.get(f.name, "")
        kw: dict[str, Any] = {"dest": f.name}
        if "choices" in meta:
            kw["choices"] = meta["choices"]
        if "metavar" in meta:
            kw["metavar"] = meta["metavar"]
        origin = typing.get_origin(tp)
        if tp is bool:
            kw["action"] = "store_false" if default is True else "store_true"
            kw["default"] = bool(default) if not required else False
            if default is True:  # the docstring says what the field turns on; the flag turns it off
                help_text += " (default: on; this flag turns it off)"
        elif origin is list and meta.get("positional"):
            kw.update(nargs="+" if required else "*", default=None if required else list(default))
        elif origin is list:
            kw.update(action="append", default=[] if required else list(default))
        elif origin is tuple:
            kw.update(type=csv_tuple, default=None if required else default)
            if not required and default:
                help_text += f" (default: {_shown(default)})"
        else:
            kw.update(type=tp if tp in (int, float, Path) else str)
            if not required:
                kw["default"] = default
                if default is not None:
                    help_text += f" (default: {_shown(default)})"
        kw["help"] = help_text.replace("%", "%%") or None  # argparse %-formats help ("10 %" is text)
        if meta.get("positional"):
            dest = kw.pop("dest")
            parser.add_argument(dest, **kw)
            continue
        flag = meta.get("flag", ("--no_" if tp is bool and default is True else "--") + f.name)
        if required and tp is not bool:
            kw["required"] = True
        parser.add_argument(flag, **kw)


def build(cls: type[T], values: dict[str, Any]) -> T:
    """Construct ``cls`` (and its nested dataclasses) from parsed values; every config's errors at once."""
    hints = typing.get_type_hints(cls)
    kwargs, problems = {}, []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):
            try:
                kwargs[f.name] = build(tp, values)
            except ValueError as e:
                problems.append(str(e))
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    if problems:
        raise ValueError("\n".join(problems))
    return cls(**kwargs)


class _Parser(argparse.ArgumentParser):
    """``@FILE`` on a command line reads arguments from FILE (a recipe: recipes/*/pretrain.args): ``--flag value`` on
    a line, split as a shell splits it; blank lines and ``#`` comments are skipped. Later arguments win."""

    def convert_arg_line_to_args(self, arg_line: str) -> list[str]:
        import shlex

        return shlex.split(arg_line, comments=True)


def parser_for(cls: type, prog: str, description: str | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=description, fromfile_prefix_chars="@")
    add_arguments(p, cls)
    return p


def parse(cls: type[T], argv: list[str] | None, prog: str, description: str | None = None,
          launched_by_deepspeed: bool = False) -> T:
    """Parse ``argv`` into ``cls``. ``launched_by_deepspeed``: accept (and ignore) the launcher's --local_rank."""
    p = parser_for(cls, prog, description)
    if launched_by_deepspeed:
        p.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)
    return build(cls, vars(p.parse_args(argv)))
