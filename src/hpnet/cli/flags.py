"""Command-line flags from the settings dataclasses: a field whose metadata names a flag gets it.

    max_images: int | None = field(default=None, metadata={"flag": "--max-images", "help": "..."})

The metadata keys (the field's type, default and checks stay the dataclass's own):

- ``"flag"``: the option. A bool field is a switch: it sets True, or False when the default is True
  (``"--no-amp"``). Other values are read by type: int, float or text, lists of them comma separated.
- ``"help"``: the help text; ``{default}`` in it shows the field's default, ``{choices}`` the choices
  (a registry's with each entry's help).
- ``"choices"``: a registry or a tuple of names, read when the parser is built (so entries registered
  later are listed). argparse checks a single name; the names of a list are the dataclass's to check.
- ``"smallest"``: the smallest item of a list of integers accepted as the flag is read, for settings
  checked only after the command has started working (the model's, once the data are loaded).
- ``"part"``: the field holds a dataclass of more settings (e.g. ``PruneSettings.scan``), whose
  fields' flags are the whole's.

A flag left out stays out of the namespace, so :func:`settings` leaves the dataclass's default. A
command that shows a dataclass in part picks its fields with ``only`` or ``skip`` (and may word a
help text its own way with ``helps``).
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any


def add_flags(parser, cls: type, only: Sequence[str] = (), skip: Sequence[str] = (),
              helps: dict[str, str] | None = None, at: str = "") -> None:
    """Add the flags of the dataclass ``cls`` to ``parser`` (or an argument group); ``only``, ``skip``
    (field names) and ``helps`` (field name -> help text) are for a command that shows ``cls`` in part.
    Values land in the namespace under ``at`` (default the class name) dot the field name."""
    at = at or cls.__name__
    for f, hint in _fields(cls):
        if f.metadata.get("part"):
            add_flags(parser, hint, only, skip, helps, f"{at}.{f.name}")
        elif "flag" in f.metadata and (not only or f.name in only) and f.name not in skip:
            text = (helps or {}).get(f.name, f.metadata.get("help"))
            parser.add_argument(f.metadata["flag"], dest=f"{at}.{f.name}", default=argparse.SUPPRESS,
                                help=_help(text, f), **_reading(f, hint))


def given(args: argparse.Namespace, cls: type, at: str = "") -> dict[str, Any]:
    """The fields of ``cls`` given on the command line, parts as dataclasses."""
    at, found = at or cls.__name__, {}
    for f, hint in _fields(cls):
        if f.metadata.get("part"):
            part = given(args, hint, f"{at}.{f.name}")
            if part:
                found[f.name] = dataclasses.replace(_default(f), **part)
        elif f"{at}.{f.name}" in vars(args):
            found[f.name] = getattr(args, f"{at}.{f.name}")
    return found


def settings(args: argparse.Namespace, cls: type, **more: Any) -> Any:
    """The dataclass ``cls`` from the flags given, and ``more`` fields; its own defaults for the rest."""
    return cls(**{**given(args, cls), **more})


def default(cls: type, name: str) -> Any:
    """The default of the field ``name`` of the dataclass ``cls``."""
    return _default(cls.__dataclass_fields__[name])


def _fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _reading(f: dataclasses.Field, hint: Any) -> dict[str, Any]:
    """argparse's keywords for reading the field: a switch, one value, or a comma-separated list."""
    if hint is bool:
        return {"action": "store_false" if f.default is True else "store_true"}
    kind, many = _kind(hint)
    metavar = f.metadata["flag"].lstrip("-").replace("-", "_").upper()
    if many:
        return {"type": _comma_list(kind, f.metadata.get("smallest")), "metavar": metavar}
    if "choices" in f.metadata:
        return {"type": kind, "choices": list(f.metadata["choices"])}
    return {"type": kind, "metavar": metavar}


def _kind(hint: Any) -> tuple[type, bool]:
    """(the type of one value: int, float or str; whether the field is a list) of a type hint."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else str
    many = typing.get_origin(hint) in (list, tuple, Sequence)
    one = typing.get_args(hint)[0] if many else hint
    return (one if one in (int, float) else str), many


_WORDS = {int: "integers", float: "numbers", str: "names"}


def _comma_list(kind: type, smallest: int | None):
    def read(text: str) -> list:
        try:
            items = [kind(w.strip()) for w in text.split(",") if w.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {_WORDS[kind]}, got {text!r}") from None
        if smallest is not None and (not items or min(items) < smallest):
            wanted = {0: "non-negative integers", 1: "positive integers"}.get(smallest, f"integers >= {smallest}")
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return items
    return read


def _help(text: str | None, f: dataclasses.Field) -> str | None:
    """The help text with its placeholders filled, and "%" kept from argparse's formatting."""
    if text is None:
        return None
    if "{default}" in text:
        text = text.replace("{default}", _shown(_default(f)))
    if "{choices}" in text:
        text = text.replace("{choices}", _listed(f.metadata["choices"]))
    return text.replace("%", "%%")


def _shown(value: Any) -> str:
    """A default as one would type it: lists comma separated, numbers short."""
    if isinstance(value, (list, tuple)):
        return ",".join(_shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _listed(choices) -> str:
    """The choices, each with its help when it has one (registry entries)."""
    entries = list(choices.items() if hasattr(choices, "items") else ((name, None) for name in choices))
    if not any(hasattr(entry, "help") for _, entry in entries):
        return ", ".join(name for name, _ in entries)
    return "; ".join(f"{name}: {entry.help}" if hasattr(entry, "help") else name for name, entry in entries)
