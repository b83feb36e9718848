"""Rich progress bars with an ETA, shared by the CLI commands and the training loops."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar with ETA on stderr; yields ``update(done, total)``. Off when
    stderr is not a terminal (a log file, a pipe): there a transient bar leaves only an
    empty line, e.g. before an ``error:`` line."""
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda done, total: None
        return
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = prog.add_task(escape(label), total=None)  # labels like linas[kappa=1]
    started: list[int] = []

    def update(done: int, total: int) -> None:
        if not started:  # subnets already stored do not count towards the ETA
            started.append(done)
            prog.reset(task, total=total - done, completed=0)
        else:
            prog.update(task, completed=done - started[0], total=total - started[0])

    with prog:
        yield update


class StepProgress:
    """A rich progress bar over the steps of a training or search run, on stderr: the
    epoch and running figures in its text, an ETA, one printed line per epoch. A no-op
    when disabled (other ranks of a distributed run, ``--no-progress``, tests).

    ``fields`` is the text after the bar with ``{name}`` format fields, e.g.
    ``"loss {loss:.4f}"``; ``advance(epoch, loss=...)`` fills them.
    """

    def __init__(
        self,
        enabled: bool,
        total: int,
        completed: int = 0,
        label: str = "epoch",
        fields: str = "loss {loss:.4f}",
        **initial: float,
    ) -> None:
        self.enabled, self.total, self.completed = enabled, total, completed
        self.label, self.fields, self.initial = label, fields, initial
        self._p: Any = None

    def __enter__(self) -> StepProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            text = _task_fields(self.fields)
            self._p = Progress(
                TextColumn(f"[bold]{self.label} {{task.fields[epoch]}}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(text),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._p.__enter__()
            start = {k: float("nan") for k in _field_names(self.fields)} | self.initial
            self._task = self._p.add_task(
                self.label, total=self.total, completed=self.completed, epoch=0, **start
            )
        return self

    def advance(self, epoch: int, **values: float) -> None:
        if self._p is not None:
            self._p.update(self._task, advance=1, epoch=epoch, **values)

    def print(self, line: str) -> None:
        """A line above the bar (an epoch's summary)."""
        if self._p is not None:
            self._p.console.print(line, highlight=False)

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)


def _field_names(fmt: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(fmt) if name]


def _task_fields(fmt: str) -> str:
    """``"loss {loss:.4f}"`` -> ``"loss {task.fields[loss]:.4f}"`` (rich's task fields)."""
    import string

    out = []
    for literal, name, spec, conv in string.Formatter().parse(fmt):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name:
            conv_s = f"!{conv}" if conv else ""
            spec_s = f":{spec}" if spec else ""
            out.append(f"{{task.fields[{name}]{conv_s}{spec_s}}}")
    return "".join(out)
