"""Named choices (backbones, heads, data sources, pruning scorers): one entry each, listed by the CLI."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import HPNetError

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered name -> entry table. ``register(name)`` decorates an entry; ``get(name)`` looks one
    up with a one-line error listing the choices (``what`` names the setting, e.g. "--backbone")."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.what}: {name!r} is registered twice")
            self._entries[name] = entry
            return entry
        return add

    def unregister(self, name: str) -> None:
        """Remove an entry (for entries registered for a while, e.g. in a test)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        if not isinstance(name, str) or name not in self._entries:
            raise HPNetError(f"{self.what} must be one of {', '.join(self._entries)}, got {name!r}")
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self):
        return self._entries.items()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
