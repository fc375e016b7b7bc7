"""Shared test setup: no network, a throw-away cache, and real data when it is present.

As the README says, tests that need MNIST read it from `../shared/data` or, failing that,
from the user's `$GENLEARN_DATA`, and are skipped, saying so, when neither holds `mnist/`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def has_mnist(folder: Path | None) -> bool:
    return folder is not None and (folder / "mnist").is_dir()


def pick_data_dir(shared: Path, user_value: str | None) -> Path | None:
    """The `GENLEARN_DATA` the tests run with, or None to leave it unset.

    `shared` (the repo's `../shared/data`) when it exists, else the user's folder when it holds
    `mnist/`, else none; the user's folder also wins over a `shared` that lacks `mnist/`, so
    MNIST tests are skipped only when neither provides it.
    """
    user = Path(user_value.strip()).expanduser().resolve() if user_value else None
    if has_mnist(shared):
        return shared
    if has_mnist(user):
        return user
    return shared if shared.is_dir() else None


@pytest.fixture(autouse=True, scope="session")
def _test_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """Tests never download, never touch ~/.cache, and find MNIST & co. in the data folder."""
    folder = pick_data_dir(SHARED_DATA, os.environ.get("GENLEARN_DATA", "").strip() or None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENLEARN_OFFLINE", "1")
        patch.setenv("GENLEARN_CACHE", str(tmp_path_factory.mktemp("genlearn-cache")))
        if folder is not None:
            patch.setenv("GENLEARN_DATA", str(folder))
        else:
            patch.delenv("GENLEARN_DATA", raising=False)
        yield folder


@pytest.fixture
def shared_data(_test_data_dir: Path | None) -> Path:
    """The data folder in use (holding mnist/); skips the test when no folder provides MNIST."""
    if _test_data_dir is None or not has_mnist(_test_data_dir):
        pytest.skip(
            f"MNIST not found: neither {SHARED_DATA}/mnist/ nor $GENLEARN_DATA/mnist/ exists "
            f"(put the MNIST IDX files in one of them to run this test)"
        )
    return _test_data_dir
