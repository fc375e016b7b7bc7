"""A strict reader for IDX files (the MNIST / Fashion-MNIST format).

IDX layout: a 4-byte big-endian magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the payload. Everything is checked, so
a truncated or mislabelled file fails here, with its name, instead of as a reshape error or a
silently short dataset further on.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from genlearn.errors import DataError

IMAGES_MAGIC = 2051  # uint8, 3 dimensions
LABELS_MAGIC = 2049  # uint8, 1 dimension

_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_FIX = "get a fresh copy of the file"


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an IDX file (gzip'd when its name ends in .gz) whose magic number must be `magic`."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes): {_FIX}")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(
            f"{path}: IDX magic number is {found}, expected {magic}: wrong or corrupt file, {_FIX}"
        )
    dtype = _TYPES[data[2]]  # a valid `magic` always names a known type
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header: {_FIX}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {problem}: shape {shape} needs {expected} bytes of data, "
            f"found {actual}: {_FIX}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when the name ends in .gz."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read file ({error.strerror or error})") from error
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DataError(
            f"{path}: not a valid gzip file ({error or 'unexpected end'}): {_FIX}"
        ) from error
