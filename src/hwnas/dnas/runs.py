"""What ``dsearch`` and ``dtrain`` share about a run folder: a finished run is not
replaced unasked, a resumed run may run longer, and what a run prints while it works."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from hwnas.errors import HwnasError
from hwnas.report.progress import StepProgress

CHECKPOINT_NAME = "checkpoint.pt"
SUMMARY_NAME = "summary.json"

#: where a run's plain lines go (the startup, one line per epoch); None: nowhere
Log = Callable[[str], None] | None

__all__ = [
    "Log",
    "check_epochs_reached",
    "emit",
    "finished_run",
    "refuse_finished_run",
    "stderr_line",
]


def finished_run(out: str | Path) -> bool:
    """Whether ``out`` holds a finished run: its checkpoint and the summary written at
    the end."""
    out = Path(out)
    return (out / CHECKPOINT_NAME).is_file() and (out / SUMMARY_NAME).is_file()


def refuse_finished_run(out: str | Path, what: str) -> None:
    """Refuse to start a run over a finished one in ``out``: a forgotten ``--resume``
    would otherwise delete a long search or training."""
    if finished_run(out):
        raise HwnasError(
            f"{out} holds a finished {what} (checkpoint.pt and summary.json); starting over "
            "would delete it: --resume (resume=True) continues it (with more --epochs, "
            "runs on), or choose another --out (out_dir), or remove the folder"
        )


def check_epochs_reached(done: int, epochs: int, path: Path) -> None:
    """A resumed run may extend its schedule (``epochs`` more than the checkpoint
    holds, as ``hwnas train``), not shorten it below the epochs already run."""
    if epochs < done:
        raise HwnasError(
            f"checkpoint '{path}' already holds {done} epochs, more than epochs {epochs}: "
            f"resume with epochs >= {done} (--epochs), or start over in another --out"
        )


def stderr_line(line: str) -> None:
    """One plain line on stderr (no wrapping: a log file keeps it whole)."""
    print(line, file=sys.stderr, flush=True)


def emit(bar: StepProgress, log: Log, line: str) -> None:
    """An epoch's line: above the progress bar when there is one, else to ``log``."""
    if bar.enabled:
        bar.print(line)
    elif log is not None:
        log(line)
