"""Shared test setup: no network, a throw-away cache, and the repo's shared data when present."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _genlearn_test_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never download, never touch ~/.cache, and find MNIST & co. in shared/data."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENLEARN_OFFLINE", "1")
        patch.setenv("GENLEARN_CACHE", str(tmp_path_factory.mktemp("genlearn-cache")))
        if SHARED_DATA.is_dir():
            patch.setenv("GENLEARN_DATA", str(SHARED_DATA))
        else:
            patch.delenv("GENLEARN_DATA", raising=False)
        yield


@pytest.fixture
def shared_data() -> Path:
    """The shared data folder (MNIST, faces...); skips the test when it is absent."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (needs mnist/ IDX files)")
    return SHARED_DATA
