"""Files a job recorded, served back to its tenant: only from that tenant's folders,
never through a symlink or ``..``, opened once and streamed from that open file.

Usage::

    opened = open_recorded("file:///srv/exports/acme/sales-….csv", served_roots("acme"))
    for chunk in chunks(opened.handle): ...

Which folders (:func:`served_roots`): the tenant's export folder
(``JOBLEDGER_EXPORT_DIR/<tenant>``, where ``export`` writes) and its interface area
(``JOBLEDGER_INTERFACE_DIR/<tenant>``, where ``interface_run`` archives what it read).
Not the source roots (``JOBLEDGER_SOURCE_ROOTS``): every tenant's imports read there, so
a file there is nobody's in particular.

How a recorded ``file://`` URI is checked (:func:`open_recorded`), and why each step:

1. absolute, no ``..`` segment, and equal to its own ``realpath``: no symlink anywhere on
   the way (an export records its resolved path, so a genuine file always passes);
2. inside one of the served folders (their real paths);
3. opened with ``O_NOFOLLOW`` (the last component cannot have become a symlink since the
   check) and ``O_NONBLOCK`` (a FIFO put there cannot hang the request), then a regular
   file by ``fstat``, and the path of the descriptor actually opened
   (``/proc/self/fd``) is the checked path again: a folder swapped for a symlink between
   check and open is refused. The response streams from that descriptor, never from a
   second open.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from app.config import settings
from app.exceptions import JobledgerError

#: Bytes read and sent at a time.
CHUNK = 64 * 1024
#: Types the standard table does not know (or knows differently on some systems).
MEDIA_TYPES = {
    ".csv": "text/csv",
    ".jsonl": "application/x-ndjson",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class FileRefused(JobledgerError):
    """The recorded file lies outside the folders served, or its path has a symlink or
    ``..``: it is not served (whatever is there now)."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"this file is not served: {why}; the API serves files only from the tenant's "
            "folders under JOBLEDGER_EXPORT_DIR and JOBLEDGER_INTERFACE_DIR"
        )


class FileGone(JobledgerError):
    """The recorded file no longer exists (moved, cleaned up)."""

    def __init__(self) -> None:
        super().__init__("the file this job recorded no longer exists where it was written")


@dataclass
class OpenedFile:
    """A served file, open: its descriptor's file object, name, size and media type."""

    handle: BinaryIO
    name: str
    size: int
    media_type: str


def served_roots(tenant: str) -> list[Path]:
    """The real paths of the folders ``tenant``'s files are served from."""
    from tasks.export_data import ExportSettings
    from tasks.interface_run import Interfaces

    return [
        Path(os.path.realpath(settings.of(ExportSettings).export_dir)) / tenant,
        Path(os.path.realpath(settings.of(Interfaces).interface_dir)) / tenant,
    ]


def open_recorded(uri: str, roots: Sequence[Path]) -> OpenedFile:
    """Open the file a ``file://`` URI names if it lies in ``roots`` (see the module).

    Raises:
        FileRefused: not a local file URI, a ``..`` or a symlink on its path, outside the
            roots, or not a regular file.
        FileGone: nothing there any more.
    """
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise FileRefused("it is not a local file")
    path = unquote(parts.path)
    if not os.path.isabs(path) or ".." in path.split("/"):
        raise FileRefused("its path is not absolute or has '..'")
    if not os.path.lexists(path):
        raise FileGone()
    if os.path.realpath(path) != os.path.normpath(path):
        raise FileRefused("its path goes through a symlink")
    if not any(Path(path).is_relative_to(root) for root in roots):
        raise FileRefused("it lies outside the tenant's folders")
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileGone() from None
    except OSError:  # ELOOP: it became a symlink since the check
        raise FileRefused("its path goes through a symlink") from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise FileRefused("it is not a regular file")
        opened = Path(f"/proc/self/fd/{descriptor}")
        if opened.exists() and os.readlink(opened) != os.path.normpath(path):
            raise FileRefused("its path changed while it was opened")
        handle = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    name = os.path.basename(path)
    suffix = os.path.splitext(name)[1].lower()
    media_type = MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0]
    return OpenedFile(handle, name, status.st_size, media_type or "application/octet-stream")


def chunks(handle: BinaryIO) -> Iterator[bytes]:
    """The file's bytes, :data:`CHUNK` at a time; closes it at the end (or when the
    response stops early)."""
    with handle:
        while block := handle.read(CHUNK):
            yield block
