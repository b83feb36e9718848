"""Algorithm specs: ``NAME`` or ``NAME[key=value,...]`` (``linas[class_mean=false]``), as
``hwnas search --algorithm`` and the search-efficiency study take them, and building an
algorithm from one with its options checked against the constructor's type hints."""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from hwnas.errors import HwnasError
from hwnas.registry import ALGORITHMS

__all__ = [
    "build_algorithm",
    "parse_algorithm",
    "parse_options",
    "resolve_algorithm",
    "split_algorithms",
]


def parse_options(options: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings as a dict; values as JSON where they parse (numbers, true,
    false, lists), else strings; '-' in keys becomes '_'. A key given twice is an error
    (which one was meant?)."""
    out: dict[str, Any] = {}
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep or not key.strip():
            raise HwnasError(f"bad option '{opt}' (expected key=value)")
        key = key.strip().replace("-", "_")
        if key in out:
            raise HwnasError(f"option {key} given twice ('{opt}'); give it once")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def split_algorithms(text: str) -> list[str]:
    """A comma-separated algorithm list whose entries may carry options in brackets,
    e.g. ``random,linas,linas[class_mean=false,kappa=1]``: commas inside brackets stay
    (also used for the options themselves, whose values may be JSON lists)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if depth < 0:
            raise HwnasError(f"unbalanced ']' in algorithms '{text}'")
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if depth:
        raise HwnasError(f"unclosed '[' in algorithms '{text}'")
    out.append(cur.strip())
    return [a for a in out if a]


def parse_algorithm(spec: str) -> tuple[str, dict[str, Any]]:
    """``'linas'`` -> ('linas', {}); ``'linas[class_mean=false,kappa=1]'`` -> ('linas',
    {'class_mean': False, 'kappa': 1}): one study can compare variants of an algorithm."""
    name, sep, rest = spec.strip().partition("[")
    if not sep:
        return name.strip(), {}
    if not rest.endswith("]"):
        raise HwnasError(f"bad algorithm '{spec}' (expected NAME[key=value,...])")
    return name.strip(), parse_options(split_algorithms(rest[:-1]))


def _option_types(cls: type) -> dict[str, Any] | None:
    """Constructor parameter -> type hint (``Any`` where unannotated), without ``seed``;
    ``None`` when the constructor takes ``**kwargs`` (anything goes)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):
        hints = {}
    return {n: hints.get(n, Any) for n in params if n not in ("self", "seed")}


def algorithm_options(name: str) -> list[dict[str, Any]] | None:
    """The options an algorithm takes (``name[key=value]`` or ``--option``): name, type,
    default and what it does (``help``) of each; ``None`` when it passes any option
    through."""
    cls = ALGORITHMS.get(name)
    types = _option_types(cls)
    if types is None:
        return None
    params = inspect.signature(cls.__init__).parameters
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's word on an option wins
        helps.update(vars(klass).get("option_help", {}))
    out = []
    for key, hint in types.items():
        default = params[key].default
        out.append(
            {
                "name": key,
                "type": getattr(hint, "__name__", None) or str(hint).replace("typing.", ""),
                "default": None if default is inspect.Parameter.empty else default,
                "help": helps.get(key, ""),
            }
        )
    return out


def resolve_algorithm(
    spec: str, options: Mapping[str, Any] | None = None
) -> tuple[str, type, dict[str, Any]]:
    """The registered name, class and checked options of an algorithm spec plus extra
    ``options`` (the same key in both must agree). Unknown names and options, and values
    of the wrong type (``class_mean=maybe``), fail with one clear ``HwnasError`` before any
    evaluation; values are converted as the type hints say (``"1"`` -> 1.0 for a float)."""
    name, opts = parse_algorithm(spec)
    for key, value in (options or {}).items():
        if key in opts and opts[key] != value:
            raise HwnasError(
                f"algorithm option '{key}' given twice: {opts[key]!r} in '{spec}' and {value!r}"
            )
        opts[key] = value
    cls = ALGORITHMS.get(name)
    types = _option_types(cls)
    if types is None:
        return name, cls, opts
    checked = {}
    for key, value in opts.items():
        if key not in types:
            known = ", ".join(sorted(types)) or "none"
            raise HwnasError(
                f"bad options for algorithm '{name}': unknown '{key}' (known: {known})"
            )
        try:
            checked[key] = TypeAdapter(types[key]).validate_python(value)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            raise HwnasError(
                f"bad options for algorithm '{name}': {key}={value!r}: {msg}"
            ) from None
    return name, cls, checked


def build_algorithm(spec: str, seed: int = 0, options: Mapping[str, Any] | None = None) -> Any:
    """An algorithm instance from a spec (see ``resolve_algorithm``)."""
    name, cls, opts = resolve_algorithm(spec, options)
    try:
        return cls(seed=seed, **opts)
    except TypeError as exc:
        raise HwnasError(f"bad options for algorithm '{name}': {exc}") from None


def algorithm_label(algorithm: str, options: dict[str, Any] | None = None) -> str:
    """How a search's algorithm is named in tables and plots: the bracket form, options
    given apart (``--option``) included, so ``nsga2 --option pop_size=10`` and
    ``nsga2[pop_size=10]`` read the same and neither reads as plain ``nsga2``."""
    if not options:
        return algorithm
    base = algorithm.split("[", 1)[0]  # the options hold the bracket's too (resolved)
    shown = (v if isinstance(v, str) else json.dumps(v) for v in options.values())
    return base + "[" + ",".join(f"{k}={v}" for k, v in zip(options, shown, strict=True)) + "]"
