"""Process-wide settings (where hwnas finds its data files) and config validation."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from platformdirs import user_cache_dir

from hwnas.errors import DataNotFoundError, HwnasError

M = TypeVar("M")

ENV_DATA_DIR = "HWNAS_DATA_DIR"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Return the data directory: the explicit override, else ``$HWNAS_DATA_DIR``, else a
    per-user cache dir (where ``hwnas data fetch`` downloads to)."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    return Path(user_cache_dir("hwnas")) / "data"


def data_file(relative: str, override: str | os.PathLike[str] | None = None) -> Path:
    """Path of one data file, raising a clear error that names the fix when it is missing."""
    root = data_dir(override)
    path = root / relative
    if not path.is_file():
        raise DataNotFoundError(
            f"data file '{relative}' not found in data dir '{root}' "
            f"(set --data-dir or {ENV_DATA_DIR}, or {_how_to_get(relative)})"
        )
    return path


def _how_to_get(relative: str) -> str:
    """How a user gets one data file: 'hwnas data fetch NAME', or where the manual steps
    are for a file that cannot be rebuilt from upstream alone."""
    from hwnas.fetch import DATASETS

    for ds in DATASETS.values():
        for p in ds.products:
            if p.path == relative:
                if p.convertible:
                    return f"run 'hwnas data fetch {ds.name}'"
                return (
                    f"build it by the manual steps 'hwnas data fetch {ds.name}' prints "
                    "(docs/DATA.md), or fetch it from a mirror (HWNAS_DATA_MIRROR)"
                )
    return f"run 'hwnas data fetch {relative.split('/', 1)[0]}'"


def validate_model(model_cls: type[M], data: dict[str, Any], what: str) -> M:
    """``model_cls(**data)`` with pydantic's first validation error as one line a user can
    act on: ``unknown WHAT setting 'x' (known: ...)`` or ``bad WHAT config: x: reason``."""
    from pydantic import ValidationError

    try:
        return model_cls(**_plain(data))
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            raise HwnasError(
                f"unknown {what} setting '{loc}' ({known_settings(model_cls, first['loc'])})"
            ) from None
        msg = first["msg"].removeprefix("Value error, ")  # a validator's own words
        raise HwnasError(f"bad {what} config: {loc + ': ' if loc else ''}{msg}") from None


def known_settings(model_cls: type, loc: Sequence[Any]) -> str:
    """``[did you mean 'b'? ]known: a, b, ...`` for an unknown setting at ``loc``
    (pydantic's error location): the fields of the model that holds it (a nested model's
    own, not the top's), after a near spelling (``samples`` -> ``profile_samples``)."""
    import difflib

    fields = _fields_at(model_cls, list(loc)[:-1])
    if not fields:
        return "known: none"
    name = str(loc[-1]) if loc else ""
    close = difflib.get_close_matches(name, fields, n=1)
    if not close:  # a flag's name: the setting often ends with it (samples: profile_samples)
        close = [f for f in fields if name and f.endswith(f"_{name}")][:1]
    return (f"did you mean '{close[0]}'? " if close else "") + "known: " + ", ".join(fields)


def _fields_at(model_cls: type, path: list[Any]) -> list[str]:
    """The field names of the pydantic model reached from ``model_cls`` along ``path``
    (field names; list indices and dict keys skipped); [] where it is not a model."""
    import typing

    from pydantic import BaseModel

    cls: Any = model_cls
    for part in path:
        fields = getattr(cls, "model_fields", None)
        if fields is None or part not in fields:
            continue  # an index into a list, or a key of a dict of models
        ann = fields[part].annotation
        models = [
            a
            for a in (ann, *typing.get_args(ann))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not models:
            return []
        cls = models[0]
    return list(getattr(cls, "model_fields", {}))


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers, in dicts and lists too: a config
    built in a loop over ``np.arange`` is as valid as one typed by hand."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value] if isinstance(value, list) else tuple(map(_plain, value))
    return value


def changed_settings(
    old: Mapping[str, Any], new: Mapping[str, Any], free: Collection[str] = ()
) -> str:
    """The settings a resumed run changes, as ``key OLD (now NEW)`` joined by commas ('' when
    none), so a refusal names them; keys in ``free`` may change, and a list equals a tuple
    with the same items (checkpoints give back tuples, JSON gives lists)."""
    import json

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return bool(a == b)

    def text(v: Any) -> str:
        return json.dumps(v, default=str)

    keys = sorted(k for k in set(old) | set(new) if k not in free)
    return ", ".join(
        f"{k} {text(old.get(k))} (now {text(new.get(k))})"
        for k in keys
        if not same(old.get(k), new.get(k))
    )
