"""User-facing errors: the CLI turns these into one clear line and exit code 2 (3 for a
device that is unavailable: run the same command again once it is back)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar


class HwnasError(Exception):
    """An error the user can act on (bad flag, config, file, architecture or data dir)."""


class DataNotFoundError(HwnasError):
    """A data file that hwnas needs is missing from the data directory."""


class SetupError(HwnasError):
    """An evaluation failed for a reason of the setup, not of the architecture (a device
    agent gone or refusing the token, no reply in time): a search stops on it instead of
    recording the architecture as failed, and ``--resume`` goes on once it is mended."""


class DeviceUnavailableError(SetupError):
    """The device (a device agent) cannot be reached, dropped the connection, gave no
    reply in time or stayed busy: nothing is wrong with the input, and the same command
    run again once the device is back goes on. The CLI exits with :data:`EXIT_DEVICE`."""


#: exit status of a run stopped by an unavailable device (2 is bad input)
EXIT_DEVICE = 3
#: exit status of a search or pipeline that finished with nothing meeting its constraints
EXIT_NOTHING = 4

F = TypeVar("F", bound=Callable[..., Any])


def reworded(exc: HwnasError, message: str) -> HwnasError:
    """``exc``'s kind of error with ``message`` (a hint added): the CLI's exit status
    follows the kind, so rewording must not turn a lost device into bad input."""
    try:
        return type(exc)(message)
    except TypeError:  # a subclass that takes other arguments
        return HwnasError(message)


def user_errors(fn: F) -> F:
    """A CLI command's HwnasError -> one ``error:`` line on stderr and exit code 2
    (:data:`EXIT_DEVICE` for a device unavailable); shared by every command module."""
    import functools
    import sys

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HwnasError as e:
            import typer

            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(EXIT_DEVICE if isinstance(e, DeviceUnavailableError) else 2) from None

    return wrapper  # type: ignore[return-value]


def check_not_under_file(path: str | os.PathLike[str]) -> Path:
    """Refuse an output path whose nearest existing parent is a file (``a.json/x``),
    before any work is done; returns the path."""
    path = Path(path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise HwnasError(f"cannot write '{path}': '{parent}' is a file, not a directory")
            break
    return path


def check_output_file(out: str | os.PathLike[str], example: str = "subnet.onnx") -> Path:
    """An ``--out`` file path that is not a directory (``example`` names a file to put in
    one) and does not lie under a file."""
    out = Path(out)
    if out.is_dir():
        raise HwnasError(f"--out '{out}' is a directory; give a file path, e.g. {out}/{example}")
    return check_not_under_file(out)
