"""A quiet-by-default progress bar for slow data steps (downloads, resizing thousands of images).

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
    TextColumn,
    TimeRemainingColumn,
)


@contextmanager
def progress_bar(
    description: str, total: int | None, *, show: bool = True, unit: str = "items"
) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(n)` function; draw a transient bar on stderr when `show` is true."""
    count_column = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        count_column,
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not show,
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
