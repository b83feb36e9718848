"""User-facing errors: the CLI turns these into one clear line and exit code 2."""

from __future__ import annotations

import os
from pathlib import Path


class HwnasError(Exception):
    """An error the user can act on (bad flag, config, file, architecture or data dir)."""


class DataNotFoundError(HwnasError):
    """A data file that hwnas needs is missing from the data directory."""


class SetupError(HwnasError):
    """An evaluation failed for a reason of the setup, not of the architecture (a device
    agent gone or refusing the token, no reply in time): a search stops on it instead of
    recording the architecture as failed, and ``--resume`` goes on once it is mended."""


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
