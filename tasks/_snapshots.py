"""The budget snapshot file: its format, how it is written, and the checks that read it.

Usage::

    writer = SnapshotWriter(handle, header)          # a binary file open for writing
    writer.write(CategoryRecord(name="Coffee", transactions=3))
    ...
    writer.finish()                                   # the trailer: counts and checksum

    contents = read_snapshot(handle, expect_tenant="acme", expect_budget="household")
    contents.transactions, contents.suggestions       # or SnapshotCheckFailed(check, …)

A snapshot is UTF-8 JSON lines, one object a line (``snapshot_create`` writes it,
``snapshot_redownload`` reads it back):

1. the header: ``{"snapshot": "jobledger.budget", "version": 1, "tenant", "budget_id",
   "job_id", "created_at"}``;
2. the records, in this order: ``{"type": "category", …}`` (every category the budget's
   transactions carry, with how many do), ``{"type": "transaction", …}``,
   ``{"type": "suggestion", …}`` (a suggestion names its transaction by ``external_id``);
3. the trailer: ``{"end": true, "records": {"categories": n, "transactions": n,
   "suggestions": n}, "sha256": <hex>}`` where ``sha256`` is the SHA-256 of every byte
   before the trailer line.

The trailer makes a file check itself, wherever it comes from: a truncated download has
no trailer, a changed byte breaks the checksum. The ledger records the whole file's size,
records and SHA-256 (``job_files``) besides, checked when the file is fetched from where
it was written. SHA-256 from :mod:`hashlib` (the standard library's, nothing to add).

Every check that fails raises :class:`SnapshotCheckFailed` naming the check
(:data:`CHECKS`), so a failed restore says which one it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import IO, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks._values import storage_problem

#: The header's ``snapshot`` value and the format version this code reads and writes.
KIND = "jobledger.budget"
VERSION = 1
#: The checks a snapshot goes through, in the order they run, by the name a failure gives.
CHECKS = (
    "location",  # it can be fetched, from inside the tenant's snapshot folder
    "size",  # as many bytes as the ledger recorded
    "sha256",  # the whole file's SHA-256 is the one recorded (or the payload's)
    "format",  # a header, records and a trailer of this format
    "content_sha256",  # the trailer's checksum is that of the bytes before it
    "records",  # as many records of each type as the trailer (and the ledger) say
    "tenant",  # the snapshot is of the job's tenant
    "budget_id",  # and of the payload's budget
    "references",  # unique transactions; suggestions and categories that fit them
)
#: Longest line a snapshot may have (a transaction's memo is free text).
MAX_LINE_BYTES = 1024 * 1024


class SnapshotCheckFailed(Exception):
    """A check of :data:`CHECKS` failed; ``str()`` names it and says what was found."""

    def __init__(self, check: str, problem: str) -> None:
        assert check in CHECKS, check
        self.check = check
        self.problem = problem
        super().__init__(f"snapshot check {check!r} failed: {problem}")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Name = Annotated[str, Field(min_length=1, max_length=128)]


class Header(_Record):
    """The first line."""

    snapshot: Literal["jobledger.budget"]
    version: Literal[1]
    tenant: Name
    budget_id: Name
    job_id: str
    created_at: str


class CategoryRecord(_Record):
    """A category the budget's transactions carry, and how many do."""

    type: Literal["category"] = "category"
    name: Name
    transactions: int = Field(ge=1)


class TransactionRecord(_Record):
    """One transaction, as ``transactions`` holds it (its row id is not kept: a restore
    makes new rows; suggestions refer to it by ``external_id``)."""

    type: Literal["transaction"] = "transaction"
    external_id: Annotated[str, Field(min_length=1, max_length=256)]
    booked_on: date
    payee: str
    payee_normalized: Annotated[str, Field(max_length=256)]
    amount: Annotated[Decimal, Field(max_digits=18, decimal_places=2)]
    category: Name | None = None
    memo: str | None = None
    source_cursor: Annotated[str, Field(max_length=64)] | None = None


class SuggestionRecord(_Record):
    """One suggestion, pending or decided, of a transaction of the snapshot."""

    type: Literal["suggestion"] = "suggestion"
    transaction: Annotated[str, Field(min_length=1, max_length=256)]
    category: Name
    confidence: float = Field(ge=0, le=1)
    evidence: int = Field(ge=0)
    status: Literal["pending", "applied", "rejected"]


Record = CategoryRecord | TransactionRecord | SuggestionRecord
#: ``type`` value -> its model, and the order the types come in.
RECORD_TYPES: dict[str, type[_Record]] = {
    "category": CategoryRecord,
    "transaction": TransactionRecord,
    "suggestion": SuggestionRecord,
}


class Trailer(_Record):
    """The last line."""

    end: Literal[True]
    records: dict[Literal["categories", "transactions", "suggestions"], int]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


#: The trailer's count key of each record type.
COUNT_KEYS = {"category": "categories", "transaction": "transactions", "suggestion": "suggestions"}


def _line(document: dict[str, Any]) -> bytes:
    """One line: compact, key order as given, non-ASCII kept (a snapshot is UTF-8)."""
    return (json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class SnapshotWriter:
    """Writes a snapshot to a binary handle, hashing and counting as it goes."""

    def __init__(self, handle: IO[bytes], header: Header) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self._order = 0
        self.counts = {key: 0 for key in COUNT_KEYS.values()}
        self._put(_line(header.model_dump(mode="json")))

    def write(self, record: Record) -> None:
        """Append a record; types must come in :data:`RECORD_TYPES` order."""
        position = list(RECORD_TYPES).index(record.type)
        if position < self._order:
            raise ValueError(f"a {record.type} record after the {list(RECORD_TYPES)[self._order]}s")
        self._order = position
        self._put(_line(record.model_dump(mode="json")))
        self.counts[COUNT_KEYS[record.type]] += 1

    def finish(self) -> int:
        """Write the trailer; returns how many records the snapshot holds."""
        trailer = Trailer(end=True, records=dict(self.counts), sha256=self._digest.hexdigest())
        self._handle.write(_line(trailer.model_dump(mode="json")))
        return sum(self.counts.values())

    def _put(self, line: bytes) -> None:
        self._digest.update(line)
        self._handle.write(line)


@dataclass
class SnapshotContents:
    """A snapshot that passed every check from ``format`` on: its header and counts, and
    its records when read with ``keep`` (else empty lists: :func:`snapshot_records` reads
    them again)."""

    header: Header
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS.values(), 0))
    categories: list[CategoryRecord] = field(default_factory=list)
    transactions: list[TransactionRecord] = field(default_factory=list)
    suggestions: list[SuggestionRecord] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(self.counts.values())


def read_snapshot(
    handle: IO[bytes],
    *,
    expect_tenant: str,
    expect_budget: str,
    expect_records: int | None = None,
    tick: Any = None,
    keep: bool = True,
) -> SnapshotContents:
    """Read and check a whole snapshot (checks ``format`` to ``references``, in order of
    :data:`CHECKS`; ``expect_records``: the count the ledger recorded, if any; ``tick``:
    called for every line, the job's checkpoint). ``keep=False``: the records are checked
    as they stream by and not held (a restore reads them again with
    :func:`snapshot_records`); what the ``references`` check needs is held: each
    transaction's ``external_id`` and the categories' counts.

    Raises:
        SnapshotCheckFailed: naming the first check that failed.
    """
    digest = hashlib.sha256()
    lines = _lines(handle)
    first = next(lines, None)
    if first is None:
        raise SnapshotCheckFailed("format", "the file is empty")
    header = _parse(Header, first, 1, "header")
    digest.update(first)
    contents = SnapshotContents(header)
    lists: dict[str, list[Any]] = {
        "category": contents.categories,
        "transaction": contents.transactions,
        "suggestion": contents.suggestions,
    }
    references = _References()
    trailer: Trailer | None = None
    for number, line in enumerate(lines, start=2):
        if tick is not None:
            tick()
        if trailer is not None:
            raise SnapshotCheckFailed("format", f"line {number} comes after the trailer")
        document = _json(line, number)
        if isinstance(document, dict) and document.get("end") is True:
            trailer = _parse(Trailer, line, number, "trailer", document)
            continue
        record = _record(line, number, document, references.order)
        references.add(record)
        contents.counts[COUNT_KEYS[record.type]] += 1
        if keep:
            lists[record.type].append(record)
        digest.update(line)
    if trailer is None:
        raise SnapshotCheckFailed("format", "no trailer line: the file is cut short")
    if digest.hexdigest() != trailer.sha256:
        raise SnapshotCheckFailed(
            "content_sha256",
            f"the records hash to {digest.hexdigest()}, the trailer says {trailer.sha256}",
        )
    _check_counts(contents, trailer, expect_records)
    if header.tenant != expect_tenant:
        raise SnapshotCheckFailed(
            "tenant", f"the snapshot is of tenant {header.tenant!r}, the job's is {expect_tenant!r}"
        )
    if header.budget_id != expect_budget:
        raise SnapshotCheckFailed(
            "budget_id",
            f"the snapshot is of budget {header.budget_id!r}, the payload names {expect_budget!r}",
        )
    references.check()
    return contents


def snapshot_records(handle: IO[bytes]) -> Iterator[Record]:
    """The records of a snapshot :func:`read_snapshot` has checked, read again from the
    start of ``handle``, in file order (header and trailer skipped)."""
    handle.seek(0)
    lines = _lines(handle)
    next(lines, None)  # the header
    order = 0
    for number, line in enumerate(lines, start=2):
        document = _json(line, number)
        if isinstance(document, dict) and document.get("end") is True:
            return
        record = _record(line, number, document, order)
        order = list(RECORD_TYPES).index(record.type)
        yield record


def _record(line: bytes, number: int, document: Any, order: int) -> Record:
    """The record on line ``number``; its type may not come before type ``order``."""
    kind = document.get("type") if isinstance(document, dict) else None
    if kind not in RECORD_TYPES:
        raise SnapshotCheckFailed(
            "format",
            f"line {number}: no record type {kind!r} (give one of {', '.join(RECORD_TYPES)})",
        )
    if list(RECORD_TYPES).index(kind) < order:
        raise SnapshotCheckFailed(
            "format", f"line {number}: a {kind} record after the {list(RECORD_TYPES)[order]}s"
        )
    return _parse(RECORD_TYPES[kind], line, number, kind, document)  # type: ignore[no-any-return]


def _check_counts(contents: SnapshotContents, trailer: Trailer, expect_records: int | None) -> None:
    found = dict(contents.counts)
    said = {key: trailer.records.get(key, 0) for key in found}  # type: ignore[call-overload]
    if found != said:
        raise SnapshotCheckFailed("records", f"the file holds {found}, the trailer says {said}")
    if expect_records is not None and contents.records != expect_records:
        raise SnapshotCheckFailed(
            "records",
            f"the file holds {contents.records} records, the ledger recorded {expect_records}",
        )


class _References:
    """The ``references`` check, fed the records as they stream by (types in
    :data:`RECORD_TYPES` order, so every transaction is known before the first
    suggestion): each transaction once; each suggestion of a transaction of the snapshot,
    at most one per transaction; the categories exactly those the transactions carry.
    Its verdict waits for :meth:`check`, so the checks before it in :data:`CHECKS` (the
    counts, the tenant) are the ones a file fails first."""

    def __init__(self) -> None:
        self.order = 0
        self.seen: set[str] = set()
        self.suggested: set[str] = set()
        self.listed: dict[str, int] = {}
        self.carried: dict[str, int] = {}
        self.twice: list[str] = []  # categories listed more than once
        self.problem: str | None = None

    def add(self, record: Record) -> None:
        self.order = list(RECORD_TYPES).index(record.type)
        if self.problem is not None:
            return
        if isinstance(record, CategoryRecord):
            if record.name in self.listed:
                self.twice.append(record.name)
            self.listed[record.name] = record.transactions
        elif isinstance(record, TransactionRecord):
            if record.external_id in self.seen:
                self.problem = f"transaction {record.external_id!r} appears twice"
            self.seen.add(record.external_id)
            if record.category is not None:
                self.carried[record.category] = self.carried.get(record.category, 0) + 1
        else:
            self._category_problem()
            if record.transaction not in self.seen:
                self.problem = (
                    f"a suggestion names transaction {record.transaction!r}, which the "
                    "snapshot does not hold"
                )
            elif record.transaction in self.suggested:
                self.problem = f"transaction {record.transaction!r} has two suggestions"
            self.suggested.add(record.transaction)

    def _category_problem(self) -> None:
        if self.problem is None and (self.twice or self.listed != self.carried):
            self.problem = (
                f"the categories listed {self.listed} are not those the transactions "
                f"carry {self.carried}"
            )

    def check(self) -> None:
        """Raises:
        SnapshotCheckFailed: ``references``, naming the first record that does not fit.
        """
        self._category_problem()
        if self.problem is not None:
            raise SnapshotCheckFailed("references", self.problem)


def _lines(handle: IO[bytes]) -> Iterator[bytes]:
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            raise SnapshotCheckFailed("format", f"a line is longer than {MAX_LINE_BYTES} bytes")
        if not line.endswith(b"\n"):
            raise SnapshotCheckFailed("format", "the last line is cut short (no newline)")
        yield line


def _json(line: bytes, number: int) -> Any:
    try:
        document = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SnapshotCheckFailed("format", f"line {number} is not JSON: {error}") from None
    problem = storage_problem(document)  # a NUL, NaN: the database would refuse the row
    if problem is not None:
        raise SnapshotCheckFailed("format", f"line {number}: {problem}")
    return document


def _parse(model: type[Any], line: bytes, number: int, what: str, document: Any = None) -> Any:
    document = _json(line, number) if document is None else document
    if what == "header" and (not isinstance(document, dict) or document.get("snapshot") != KIND):
        raise SnapshotCheckFailed(
            "format", f"line 1 is not a {KIND} snapshot header: this is not a budget snapshot"
        )
    if what == "header" and document.get("version") != VERSION:
        raise SnapshotCheckFailed(
            "format",
            f"snapshot version {document.get('version')!r}: this version reads {VERSION}",
        )
    try:
        return model.model_validate(document)
    except ValidationError as error:
        entry = error.errors()[0]
        where = ".".join(str(part) for part in entry["loc"]) or "*"
        raise SnapshotCheckFailed(
            "format", f"line {number} ({what}), field {where!r}: {entry['msg']}"
        ) from None
