"""User-facing errors: the CLI turns these into one clear line and exit code 2."""

from __future__ import annotations


class HwnasError(Exception):
    """An error the user can act on (bad flag, config, file, architecture or data dir)."""


class DataNotFoundError(HwnasError):
    """A data file that hwnas needs is missing from the data directory."""
