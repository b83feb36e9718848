"""One registry per kind of pluggable part (spaces, benchmarks, algorithms, predictors).

Adding a part is one new module plus one ``@REGISTRY.register("name")`` line; nothing
else dispatches on names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from hwnas.errors import HwnasError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories, with a clear error listing the known names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, doc: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            old = self._items.get(name)
            if old is not None and _where(old) != _where(obj):
                raise HwnasError(
                    f"{self.kind} '{name}' registered twice ({_where(old)}, then "
                    f"{_where(obj)}): choose another name"
                )
            # the same definition again (a notebook cell run twice, a module reloaded)
            # replaces the first
            self._items[name] = obj
            text = doc if doc is not None else (getattr(obj, "__doc__", None) or "")
            # the first paragraph, as one line (a first line alone stops mid-sentence)
            first = text.strip().split("\n\n")[0]
            self._docs[name] = " ".join(first.split())
            return obj

        return deco

    def get(self, name: str) -> T:
        _load_builtins()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise HwnasError(f"unknown {self.kind} '{name}' (known: {known})") from None

    def names(self) -> list[str]:
        _load_builtins()
        return sorted(self._items)

    def describe(self, name: str) -> str:
        _load_builtins()
        return self._docs.get(name, "")

    def __contains__(self, name: str) -> bool:
        _load_builtins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _where(obj: object) -> str:
    """Where ``obj`` was defined: module and qualified name."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


SPACES: Registry = Registry("search space")
BENCHMARKS: Registry = Registry("benchmark")
ALGORITHMS: Registry = Registry("algorithm")
PREDICTORS: Registry = Registry("predictor")

_loaded = False


def _load_builtins() -> None:
    """Import the modules that register the built-in parts (once, lazily)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for mod in (
        "hwnas.space",
        "hwnas.bench",
        "hwnas.search",
        "hwnas.predict",
    ):
        importlib.import_module(mod)
