"""Payload field types shared by the job types, so each refuses the same mistakes.

Usage::

    class ImportPayload(JobPayload):
        source: Location
        dataset: DatasetName
        tenant: Tenant = "default"

Everything here runs at ``delay()`` (in the producer), so it checks only what the payload
itself can tell: shapes, names, schemes. Whether a file exists is the worker's to find out
(it may see another filesystem); a missing file fails the job, not the ``delay()``.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    model_serializer,
)

from app.ledger.runtime.task import JobPayload
from tasks._sources import EXTENSIONS, FORMATS

#: ``[A-Za-z0-9]`` then letters, digits, ``_ . -``: safe in file names and URLs.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"

#: Largest integer a bigint column, or SQL's LIMIT/OFFSET, takes: a payload number that
#: reaches the database (a row id, a row position) is refused at ``delay()`` past it,
#: instead of failing in the worker (PostgreSQL: ``bigint out of range``; SQLite's driver:
#: an OverflowError).
MAX_BIGINT = 2**63 - 1

DatasetName = Annotated[str, Field(pattern=NAME_PATTERN)]
Tenant = Annotated[str, Field(pattern=NAME_PATTERN)]
BudgetId = Annotated[str, Field(pattern=NAME_PATTERN)]


def _location(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("is empty: give a local path or an http(s) URL")
    scheme = urlsplit(value).scheme.lower() if "://" in value else ""
    if scheme not in ("", "file", "http", "https"):
        raise ValueError(
            f"unsupported scheme {scheme!r}: give a local path, a file:// or an http(s) URL"
        )
    return value


#: A local path, ``file://`` URL or http(s) URL of a record file.
Location = Annotated[str, AfterValidator(_location)]


def _format_name(value: Any) -> Any:
    """Formats are case-insensitive; ``ndjson`` and ``jsonlines`` mean JSON lines."""
    if isinstance(value, str):
        value = value.strip().lower().lstrip(".")
        return {"ndjson": "jsonl", "jsonlines": "jsonl", "json-lines": "jsonl"}.get(value, value)
    return value


def format_problem(location: str) -> str:
    """Why the format of ``location`` cannot be guessed (for a payload error)."""
    return (
        f"cannot tell the format from {location!r}: give format as one of "
        f"{', '.join(FORMATS)} (or use a name ending in {', '.join(EXTENSIONS)})"
    )


#: Normalizer applied before a format field's ``Literal`` check.
FormatName = BeforeValidator(_format_name)


def fits_kind(
    value: Any,
    info: ValidationInfo,
    tag: str,
    uses: dict[str, frozenset[str]],
    needs: dict[str, frozenset[str]],
) -> str | None:
    """For a field validator of an item whose field ``tag`` names its kind (a validation
    rule's ``rule``, a test check's ``check``): the item's kind, after checking that this
    field fits it — present when the kind needs it, absent when the kind does not use it
    (a typo would otherwise be silently ignored). Checked per field, so the error names
    that field (``rules[2].pattern``). None when the kind itself was refused (that error
    says enough).

    Raises:
        ValueError: the field does not fit the kind.
    """
    kind = info.data.get(tag)
    if kind is None:
        return None
    name = str(info.field_name)
    item = f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind} {tag}"
    if value is None and name in needs.get(kind, ()):
        raise ValueError(f"{item} needs {name}")
    if value is not None and name not in uses[kind]:
        raise ValueError(f"{item} does not use {name}; remove it")
    return str(kind)


class KindItem(JobPayload):
    """Base of an item whose kind decides its fields (a validation rule, a test check):
    stored and shown with the fields it was given only (``{"rule": "required", "field":
    "tag"}``, not every other kind's fields as nulls)."""

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {name: value for name, value in handler(self).items() if value is not None}
