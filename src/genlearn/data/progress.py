"""A progress bar for slow steps (downloads, resizing or embedding thousands of images).

Small jobs finish before a bar is worth drawing, so callers pass a threshold; the bar goes to
stderr and disappears when done, so piped stdout stays clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second, e.g. "1,234 images/s"."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} {self.unit}/s")


@contextmanager
def progress_bar(
    description: str, total: int | None, *, show: bool = True, unit: str = "items"
) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(n)` function; draw a transient bar on stderr when `show` is true."""
    if unit == "bytes":
        count_columns: tuple[ProgressColumn, ...] = (DownloadColumn(), TransferSpeedColumn())
    else:
        count_columns = (MofNCompleteColumn(), RateColumn(unit))
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *count_columns,
        TimeRemainingColumn(),
        console=console,
        transient=True,
        # off when stderr is not a terminal: a log file would only collect blank lines
        disable=not show or not console.is_terminal,
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
