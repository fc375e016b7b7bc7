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
    description: str,
    total: int | None,
    *,
    show: bool = True,
    unit: str = "items",
    with_info: bool = False,
) -> Iterator[Callable[..., None]]:
    """Yield an `advance(n=1, info=None)` function; draw a transient bar on stderr when `show`.

    `with_info` adds a free text column that `info` updates (e.g. an optimisation's loss
    terms), and narrows the bar to leave it room."""
    if unit == "bytes":
        count_columns: tuple[ProgressColumn, ...] = (DownloadColumn(), TransferSpeedColumn())
    else:
        count_columns = (MofNCompleteColumn(), RateColumn(unit))
    info_columns = (TextColumn("{task.fields[info]}"),) if with_info else ()
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=20 if with_info else 40),
        *count_columns,
        *info_columns,
        TimeRemainingColumn(),
        console=console,
        transient=True,
        # off when stderr is not a terminal: a log file would only collect blank lines
        disable=not show or not console.is_terminal,
    )
    with progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str | None = None) -> None:
            if info is None:
                progress.advance(task, n)
            else:
                progress.update(task, advance=n, info=info)

        yield advance
