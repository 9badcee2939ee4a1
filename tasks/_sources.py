"""Reading record files (CSV, XLSX, JSON lines) from a local path or an http(s) URL.

Shared by ``import`` and ``sync``. Usage::

    with open_source("https://host/sales.csv") as source:      # or a path, or file://
        stream = read_records(source, "csv")
        for record in stream:          # Record(row, values) or Record(row, problem=...)
            ...
        source.size, source.sha256, stream.records, stream.fraction()

Everything streams: a CSV or JSON-lines body is parsed while it downloads, so memory stays
flat whatever the size; only XLSX (a zip archive, which needs seeking) is first spooled
to a temporary file. Bytes are hashed as they pass, for the ``job_files`` record.

A source that cannot be read at all (missing, unreachable, not the format it claims)
raises :class:`SourceUnreadable` with a user-safe reason; a single bad row is a
:class:`Record` with a ``problem``, so the caller can collect it and go on.

Row numbers are what a person sees in the file: for CSV and XLSX the header is row 1 and
the first data row is row 2; for JSON lines it is the line number.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import unquote, urlsplit

import httpx

from tasks._confine import (
    MAX_REDIRECTS,
    SourceRefused,
    check_opened,
    confined_path,
    guarded_client,
)
from tasks._limits import LimitExceeded, Limits
from tasks._values import excerpt

Format = Literal["csv", "xlsx", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "xlsx", "jsonl")
#: File name endings and the format they mean.
EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".xlsx": "xlsx",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
#: Seconds to wait for an http(s) source to connect or send the next bytes.
HTTP_TIMEOUT = 30.0
CHUNK = 64 * 1024


class SourceUnreadable(Exception):
    """The source cannot be read at all; ``str()`` is a user-safe reason."""


def is_http(location: str) -> bool:
    """True for http(s) URLs (read with httpx), False for local paths and file:// URLs."""
    return urlsplit(location).scheme.lower() in ("http", "https")


def local_path(location: str) -> Path:
    """The local path of a plain path or a ``file://`` URL."""
    parts = urlsplit(location)
    if parts.scheme.lower() == "file":
        return Path(unquote(parts.path))
    return Path(location)


def format_from_name(location: str) -> Format | None:
    """The format a path or URL's file name says, or None (query strings are ignored)."""
    name = urlsplit(location).path if "://" in location else location
    return EXTENSIONS.get(Path(name).suffix.lower())


class HashingReader(io.RawIOBase):
    """A binary stream over chunks (a file or an HTTP body) that hashes and counts the
    bytes as they are read."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""
        self._digest = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._digest.update(self._pending[:size])
        self._pending = self._pending[size:]
        self.bytes_read += size
        return size

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


@dataclass
class OpenedSource:
    """An open source: where it is, its expected size (None when the server did not
    say) and the hashing stream of its bytes."""

    uri: str
    expected_size: int | None
    stream: HashingReader
    local: Path | None = None

    @property
    def size(self) -> int:
        """Bytes read so far (all of them once the records are consumed)."""
        return self.stream.bytes_read

    @property
    def sha256(self) -> str:
        return self.stream.hexdigest()


@contextlib.contextmanager
def open_source(location: str, roots: tuple[Path, ...] | None = None) -> Iterator[OpenedSource]:
    """Open a local path, ``file://`` URL or http(s) URL for streaming, within what
    :mod:`tasks._confine` allows (``JOBLEDGER_SOURCE_ROOTS``, or the folders ``roots``
    when given; ``JOBLEDGER_SOURCE_ALLOWED_NETWORKS``).

    Raises:
        SourceUnreadable: outside the allowed folders or networks, not found, not a
            file, unreachable, or an HTTP error status.
    """
    if is_http(location):
        with _open_http(location) as opened:
            yield opened
        return
    path = local_path(location)
    try:
        real = confined_path(path, roots)  # before touching the file: no hint it exists
        if not real.exists():
            raise SourceUnreadable(f"source file not found: {path}")
        if not real.is_file():
            raise SourceUnreadable(f"source is not a file: {path}")
        handle = _open_confined(real, path, roots)
    except SourceRefused as error:
        raise SourceUnreadable(str(error)) from None
    with handle:
        chunks = iter(lambda: handle.read(CHUNK), b"")
        yield OpenedSource(
            uri=real.as_uri(),
            expected_size=os.fstat(handle.fileno()).st_size,
            stream=HashingReader(chunks),
            local=real,
        )


def _open_confined(real: Path, given: Path, roots: tuple[Path, ...] | None) -> IO[bytes]:
    """Open the checked real path without following a symlink put there since, without
    blocking on a FIFO, then check what was opened."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(real, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise SourceRefused(
                f"source file {given} changed into a symlink while it was opened"
            ) from None
        raise SourceUnreadable(f"cannot open source file {given}: {error.strerror}") from None
    try:
        check_opened(descriptor, given, roots)
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "rb")


@contextlib.contextmanager
def _open_http(url: str) -> Iterator[OpenedSource]:
    try:
        with (
            guarded_client(HTTP_TIMEOUT) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code == 404:
                raise SourceUnreadable(f"source not found: {url} answered HTTP 404")
            if response.status_code >= 400:
                raise SourceUnreadable(
                    f"source unreadable: {url} answered HTTP {response.status_code}"
                )
            length = response.headers.get("content-length")
            yield OpenedSource(
                uri=url,
                expected_size=int(length) if length and length.isdigit() else None,
                # No chunk size: httpx would hold bytes back until a whole chunk arrived,
                # and a slow source would look stalled; take them as they come.
                stream=HashingReader(response.iter_bytes()),
            )
    except SourceRefused as error:  # the first request's host or a redirect's
        raise SourceUnreadable(f"cannot read source {url}: {error}") from None
    except httpx.TooManyRedirects:
        raise SourceUnreadable(
            f"cannot read source {url}: more than {MAX_REDIRECTS} redirects"
        ) from None
    except httpx.HTTPError as error:
        # A transport error (refused, reset, timeout) before or while streaming the body.
        raise SourceUnreadable(
            f"cannot read source {url}: {type(error).__name__}: {error}"
        ) from None


@dataclass
class Record:
    """One data row: its values, or the problem that made it unreadable."""

    row: int
    values: dict[str, Any] | None = None
    problem: str | None = None


@dataclass
class RecordStream:
    """Records of an opened source; counts them and knows how far through it is.

    Reading stays within ``limits`` (:mod:`tasks._limits`): a source that goes over one
    raises :class:`SourceUnreadable` naming the limit, except a JSON line that is too
    long or too wide, which is a :class:`Record` with a problem. ``tick`` is called
    for every row or line read, skipped ones included (the job's checkpoint, which
    acts at most every half second: the heartbeat moves and a cancel stops the read
    however long the file or its empty stretches are).
    """

    source: OpenedSource
    format: Format
    limits: Limits = field(default_factory=Limits.from_settings)
    tick: Callable[[], None] = field(default=lambda: None, repr=False)
    records: int = 0
    _rows_total: int | None = field(default=None, repr=False)
    _iterator: Iterator[Record] | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[Record]:
        reader = {"csv": self._csv, "jsonl": self._jsonl, "xlsx": self._xlsx}[self.format]
        try:
            for record in reader():
                self.records += 1
                yield record
        except LimitExceeded as error:
            raise SourceUnreadable(str(error)) from None

    def fraction(self) -> float:
        """How far through the source the records read so far are (0 to 1)."""
        if self._rows_total:
            return min(1.0, self.records / self._rows_total)
        expected = self.source.expected_size
        if expected:
            return min(1.0, self.source.size / expected)
        return 0.0

    def _csv(self) -> Iterator[Record]:
        lines = _CsvLines(io.BufferedReader(self.source.stream), self.limits, self.tick)
        # A field is never longer than its row; csv's own default (128 KiB) would refuse
        # rows the row limit allows. Process-wide, but only these readers use csv.
        csv.field_size_limit(self.limits.row_bytes)
        try:
            reader = csv.reader(lines)
            header = _header(next(reader, None), "CSV", self.limits)
            lines.row_done()
            for index, fields in enumerate(reader, start=2):
                lines.row_done()
                if not fields:
                    continue  # blank line
                if len(fields) != len(header):
                    yield Record(
                        index,
                        problem=f"has {len(fields)} fields, the header has {len(header)}",
                    )
                    continue
                yield Record(index, dict(zip(header, fields, strict=True)))
        except UnicodeDecodeError:
            raise SourceUnreadable("bad format: the CSV file is not UTF-8 text") from None
        except csv.Error as error:
            raise SourceUnreadable(f"bad format: unreadable CSV ({error})") from None

    def _jsonl(self) -> Iterator[Record]:
        lines = io.BufferedReader(self.source.stream)
        longest = self.limits.row_bytes
        columns: set[str] = set()
        number = 0
        while line := lines.readline(longest + 1):
            self.tick()
            number += 1
            if len(line) > longest and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of the line
                    line = lines.readline(CHUNK)
                    self.tick()
                yield Record(
                    number,
                    problem=self.limits.message("row_bytes", f"is longer than {longest:,} bytes"),
                )
                continue
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as error:  # also bad UTF-8, integers of over 4300 digits
                yield Record(number, problem=f"is not valid JSON ({error})")
                continue
            except RecursionError:
                yield Record(number, problem="is not valid JSON (nested too deeply)")
                continue
            if not isinstance(value, dict):
                yield Record(number, problem="is not a JSON object")
                continue
            new = value.keys() - columns
            if len(columns) + len(new) > self.limits.columns:
                what = f"brings the file's columns to {len(columns) + len(new):,}"
                yield Record(number, problem=self.limits.message("columns", what))
                continue
            columns |= new
            yield Record(number, value)

    def _xlsx(self) -> Iterator[Record]:
        from openpyxl.utils.exceptions import InvalidFileException  # late: XLSX only

        from tasks._xlsx import first_sheet, open_workbook

        with _spooled(self.source, self.limits, self.tick) as path:
            try:
                workbook = open_workbook(path, self.limits, self.tick)
            except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError):
                raise SourceUnreadable("bad format: not an XLSX workbook") from None
            try:
                sheet, self._rows_total = first_sheet(workbook, self.limits)
                rows = _counted(sheet.iter_rows(values_only=True), self.limits, self.tick)
                header = _header(next(rows, None), "XLSX", self.limits)
                for index, cells in enumerate(rows, start=2):
                    values = [_cell(cell) for cell in cells]
                    if all(value is None for value in values):
                        continue  # empty row (spreadsheets keep formatted blank rows)
                    values += [None] * (len(header) - len(values))
                    if any(v is not None for v in values[len(header) :]):
                        yield Record(index, problem="has values beyond the header's columns")
                        continue
                    yield Record(index, dict(zip(header, values[: len(header)], strict=True)))
            except (zipfile.BadZipFile, ValueError, KeyError):
                # a part that is not what it declares (longer than its size, bad CRC)
                raise SourceUnreadable("bad format: not an XLSX workbook") from None
            finally:
                workbook.close()


def read_records(
    source: OpenedSource, format: Format, tick: Callable[[], None] | None = None
) -> RecordStream:
    """The records of an opened source in ``format``, read within the input limits of
    the settings; ``tick`` is the job's checkpoint, called for every row read."""
    if tick is None:
        return RecordStream(source, format)
    return RecordStream(source, format, tick=tick)


class _CsvLines:
    """The text lines of a CSV body, for :func:`csv.reader`, never longer than the row
    limit: a row is counted across the lines a quoted field spans, and the reader
    never holds more than the limit plus one byte of a line."""

    def __init__(self, raw: io.BufferedReader, limits: Limits, tick: Callable[[], None]):
        self._raw = raw
        self._limits = limits
        self._tick = tick
        self._first = True
        self._row_bytes = 0
        self._row = 1

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        self._tick()
        line = self._raw.readline(self._limits.row_bytes - self._row_bytes + 1)
        if not line:
            raise StopIteration
        self._row_bytes += len(line)
        if self._row_bytes > self._limits.row_bytes:
            raise self._limits.exceeded(
                "row_bytes", f"row {self._row} of the CSV file is longer than that"
            )
        if self._first:  # a byte order mark is not part of the first column's name
            self._first = False
            line = line.removeprefix(codecs.BOM_UTF8)
        # Whole lines: a UTF-8 character never spans a newline byte.
        return line.decode("utf-8")

    def row_done(self) -> None:
        """The reader finished a row: the next line starts the next one."""
        self._row += 1
        self._row_bytes = 0


def _counted(
    rows: Iterator[tuple[Any, ...]], limits: Limits, tick: Callable[[], None]
) -> Iterator[tuple[Any, ...]]:
    """XLSX rows as read, within the column and cell limits whatever the sheet declared
    (an empty row counts as one cell: reading it is work too)."""
    cells = 0
    for number, row in enumerate(rows, start=1):
        tick()
        if len(row) > limits.columns:
            raise limits.exceeded("columns", f"row {number} of the XLSX sheet has {len(row):,}")
        cells += max(1, len(row))
        if cells > limits.cells:
            raise limits.exceeded("cells", f"the XLSX sheet holds {cells:,} cells by row {number}")
        yield row


def _header(cells: Any, kind: str, limits: Limits) -> list[str]:
    if not cells:
        raise SourceUnreadable(f"bad format: the {kind} file is empty (no header row)")
    if len(cells) > limits.columns:
        raise limits.exceeded("columns", f"the {kind} header has {len(cells):,} columns")
    names = [("" if cell is None else str(cell)).strip() for cell in cells]
    while names and not names[-1]:
        names.pop()  # trailing empty header cells (spreadsheets)
    if not names or any(not name for name in names):
        raise SourceUnreadable(f"bad format: the {kind} header has an empty column name")
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise SourceUnreadable(
            f"bad format: the {kind} header repeats {', '.join(map(excerpt, duplicates[:3]))}"
        )
    return names


def _cell(value: Any) -> Any:
    """An XLSX cell as a JSON value: dates as ISO text (midnight datetimes as dates)."""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


@contextlib.contextmanager
def _spooled(source: OpenedSource, limits: Limits, tick: Callable[[], None]) -> Iterator[Path]:
    """A seekable local copy of the source (XLSX is a zip archive), hashed on the way,
    checkpointing per chunk. A file larger than the decompressed-size limit is refused
    as it comes: its parts cannot decompress to less than it holds."""

    def chunks() -> Iterator[bytes]:
        size = 0
        for chunk in iter(lambda: source.stream.read(CHUNK), b""):
            tick()
            size += len(chunk)
            if size > limits.decompressed_bytes:
                what = f"the XLSX file is over {size:,} bytes, more than its parts may hold"
                raise limits.exceeded("decompressed_bytes", what)
            yield chunk

    if source.local is not None:
        for _ in chunks():
            pass  # hash and count the file; openpyxl reads it by path
        yield source.local
        return
    with tempfile.NamedTemporaryFile(suffix=".xlsx") as copy:
        for chunk in chunks():
            copy.write(chunk)
        copy.flush()
        yield Path(copy.name)
