"""Small whole files: the one JSON form (sidecars, status files, catalog rows) and atomic
replacement (write a temporary file, fsync it if asked, rename it over the old one)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import orjson

_JSON_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def to_json(obj: Any) -> str:
    """The one JSON form of sidecars, status files and catalog rows: compact, keys sorted,
    UTF-8 (orjson: 1.8 µs for a call's sidecar, where the json module took 12.5)."""
    return orjson.dumps(obj, option=_JSON_OPTS).decode()


def write_json_atomic(path: str, obj: Any, durable: bool = False) -> None:
    """Replace ``path`` with ``obj`` as JSON."""
    write_file_atomic(path, (to_json(obj) + "\n").encode(), durable)


def write_file_atomic(path: str, data: bytes, durable: bool = False) -> None:
    """Replace ``path`` with ``data``: a temporary file (fsync'd if ``durable``), renamed. If that
    fails (a full disk), the old file stays as it was and no temporary file is left behind."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
