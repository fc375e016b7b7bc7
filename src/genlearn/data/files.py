"""Where dataset files come from: the user's data folder, then the cache, then the internet.

Resolution order for a file `<filename>` of dataset `<dataset>`:

1. `$GENLEARN_DATA/<dataset>/<filename>` or `$GENLEARN_DATA/<filename>` (the user's copy);
2. `$GENLEARN_CACHE/data/<dataset>/<filename>` (default cache: `~/.cache/genlearn`);
3. a download from the official URL into the cache, checked against its SHA-256;
4. otherwise a `DataError` saying which file to put where.

User-provided files are deliberately *not* hash-checked: a re-compressed but identical copy
has a different checksum, and the parsers validate the content anyway. Downloads are checked,
because there the checksum is the only defence against a truncated or tampered transfer.
`GENLEARN_OFFLINE=1` turns step 3 off (the test-suite sets it).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from genlearn.data.progress import progress_bar
from genlearn.errors import DataError

DATA_ENV = "GENLEARN_DATA"
CACHE_ENV = "GENLEARN_CACHE"
OFFLINE_ENV = "GENLEARN_OFFLINE"
DOWNLOAD_TIMEOUT_S = 60


def data_dir() -> Path | None:
    """The user's data folder (`$GENLEARN_DATA`), or None when unset."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """genlearn's cache root: `$GENLEARN_CACHE`, else `~/.cache/genlearn`."""
    value = os.environ.get(CACHE_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "genlearn"


def dataset_cache_dir(dataset: str) -> Path:
    """The cache folder for one dataset's files (downloads and converted copies)."""
    return cache_dir() / "data" / dataset


def downloads_disabled() -> bool:
    """True when `GENLEARN_OFFLINE` is set to a true-ish value."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def dataset_dirs(dataset: str, aliases: Sequence[str] = ()) -> list[Path]:
    """Folders searched for a dataset's files, most specific first (steps 1 and 2)."""
    names = [dataset, *aliases]
    root = data_dir()
    user_dirs = [] if root is None else [*(root / name for name in names), root]
    return user_dirs + [dataset_cache_dir(name) for name in names]


def find_local(dataset: str, filenames: Sequence[str], aliases: Sequence[str] = ()) -> Path | None:
    """The first existing file among `filenames` in the dataset's folders, or None."""
    for folder in dataset_dirs(dataset, aliases):
        for filename in filenames:
            candidate = folder / filename
            if candidate.is_file():
                return candidate
    return None


def where_to_put(dataset: str) -> str:
    """Human hint naming the folders a user can drop a dataset's files into."""
    root = data_dir()
    user = f"{root / dataset}/" if root is not None else f"${DATA_ENV}/{dataset}/"
    return f"{user} or {dataset_cache_dir(dataset)}/"


def resolve_file(
    dataset: str,
    filename: str,
    url: str | None,
    sha256: str | None,
    *,
    alternatives: Sequence[str] = (),
    aliases: Sequence[str] = (),
) -> Path:
    """Return a local path to `filename`, downloading it into the cache if needed.

    `alternatives` are other local names accepted instead (e.g. the uncompressed file);
    `aliases` are other sub-folder names searched under `$GENLEARN_DATA` and the cache.
    """
    found = find_local(dataset, [filename, *alternatives], aliases)
    if found is not None:
        return found
    if url is None:
        reason = "it has no download source"
    elif downloads_disabled():
        reason = f"downloads are off: {OFFLINE_ENV}=1"
    else:
        try:
            return download(url, dataset_cache_dir(dataset) / filename, sha256)
        # HTTPException: e.g. IncompleteRead when the connection drops mid-transfer.
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
            reason = f"download failed: {describe_error(error)}"
    raise DataError(
        f"{dataset} file {filename} not found: put it in {where_to_put(dataset)} ({reason})"
    )


def download(url: str, dest: Path, sha256: str | None, sha256_prefix: str | None = None) -> Path:
    """Download `url` to `dest` atomically, checking its SHA-256 when one is given (or, when
    only a prefix is known, as in torch-hub file names, that the hash starts with it).

    The data goes to a temporary file next to `dest` and is renamed only once complete and
    verified, so an interrupted download never leaves a half file that looks valid.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = _fetch(url, fd, dest.name)
        expected = sha256 or sha256_prefix
        if expected is not None and not digest.startswith(expected):
            wanted = f"not {sha256}" if sha256 else f"which does not start with {sha256_prefix}"
            raise DataError(
                f"downloaded {dest.name} from {url} but its SHA-256 is {digest}, "
                f"{wanted}: the file was deleted; try again later or put a "
                f"good copy in {dest.parent}/"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _fetch(url: str, fd: int, label: str) -> str:
    """Stream `url` into the open file `fd` with a progress bar; return the SHA-256."""
    digest = hashlib.sha256()
    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r:
        total = int(r.headers.get("Content-Length") or 0) or None
        with progress_bar(f"downloading {label}", total, unit="bytes") as advance:
            while chunk := r.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                advance(len(chunk))
    return digest.hexdigest()


def describe_error(error: BaseException) -> str:
    """One line for a network error (URLError wraps the useful part in `.reason`)."""
    reason = getattr(error, "reason", None) or error
    return " ".join(str(reason).split()) or type(error).__name__
