"""Checks of settings where they enter the library: one line naming the setting, or the value back.

Every settings dataclass (and the command line through it) validates its fields with these, so a
bad value is refused before any work, in the same words from Python and from the ``hpnet``
command. ``name`` is the command-line spelling (``--max-images``), which is what users see.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from typing import Any, TypeVar

from .errors import HPNetError


def count(value: Any, name: str, smallest: int = 1, optional: bool = False) -> int | None:
    """An integer >= ``smallest`` (None allowed when ``optional``); booleans and floats refused."""
    if value is None and optional:
        return None
    if not isinstance(value, Integral) or isinstance(value, bool) or value < smallest:
        extra = " (or left out)" if optional else ""
        raise HPNetError(f"{name} must be an integer >= {smallest}{extra}, got {value!r}")
    return int(value)


SEED_MAX = 2 ** 32 - 1        # the range every generator hpnet seeds accepts (numpy's legacy seeding is the narrowest)


def seed(value: Any, name: str) -> int:
    """A seed: an integer in 0..2^32-1, or a one-line error naming the setting."""
    value = count(value, name, smallest=0)
    if value > SEED_MAX:
        raise HPNetError(f"{name} must be at most 2^32-1 = {SEED_MAX}, got {value}")
    return value


def seeds(values: Any, name: str) -> list[int]:
    """A non-empty list of seeds."""
    return [seed(v, name) for v in counts(values, name, smallest=0)]


def number(value: Any, name: str, low: float | None = None, high: float | None = None,
           low_open: bool = False, optional: bool = False) -> float | None:
    """A finite real number in [low, high] (``low_open``: low excluded); None allowed when ``optional``."""
    if value is None and optional:
        return None
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        raise HPNetError(f"{name} must be a finite number{_range(low, high, low_open)}, got {value!r}")
    return float(value)


def numbers(values: Any, name: str, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> list[float]:
    """A non-empty list of :func:`number`."""
    items = _items(values, name)
    return [number(v, name, low, high, low_open) for v in items]


def counts(values: Any, name: str, smallest: int = 1) -> list[int]:
    """A non-empty list of :func:`count`."""
    return [count(v, name, smallest) for v in _items(values, name)]


def names(values: Any, name: str, indices: bool = False) -> list[str]:
    """A non-empty list of distinct, non-empty strings (``indices``: integers allowed, as strings)."""
    items = _items(values, name)
    if indices:
        items = [str(v) if isinstance(v, Integral) and not isinstance(v, bool) else v for v in items]
    if not all(isinstance(v, str) and v.strip() for v in items):
        raise HPNetError(f"{name} must be non-empty names, got {items!r}")
    twice = sorted({v for v in items if items.count(v) > 1})
    if twice:
        raise HPNetError(f"{name} lists {', '.join(twice)} more than once")
    return list(items)


def choice(value: Any, name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise HPNetError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise HPNetError(f"{name} must be true or false, got {value!r}")
    return value


def path(value: Any, name: str, optional: bool = False) -> str | None:
    """A file or folder name: a non-empty string (or os.PathLike) without a NUL byte."""
    if value is None and optional:
        return None
    text = str(value) if hasattr(value, "__fspath__") else value
    if not isinstance(text, str) or not text:
        raise HPNetError(f"{name} must be a file or folder name, got {value!r}")
    if "\0" in text:
        raise HPNetError(f"{name} {text!r} holds a NUL byte, which no file name can")
    return text


T = TypeVar("T")


def from_dict(cls: type[T], data: Any, source: str) -> T:
    """The settings dataclass ``cls`` stored as ``data`` (unknown keys ignored); errors name ``source``."""
    if not isinstance(data, dict):
        raise HPNetError(f"{source}: expected a JSON object, got {data!r}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise HPNetError(f"{source}: missing {', '.join(missing)}")
    try:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
    except HPNetError as e:
        raise HPNetError(f"{source}: {e}") from None


def _items(values: Any, name: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, Iterable)):
        raise HPNetError(f"{name} must be a list, got {values!r}")
    items = list(values)
    if not items:
        raise HPNetError(f"{name} must not be empty")
    return items


def _range(low: float | None, high: float | None, low_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" <= {high:g}"
    return ""
