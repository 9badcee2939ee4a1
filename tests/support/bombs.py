"""Small files that ask for a lot of work: the CPU and memory bombs, built
in the test (a few kilobytes on disk) so they can be checked against the import limits.
"""

from __future__ import annotations

import re
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

from openpyxl import Workbook

SHEET = "xl/worksheets/sheet1.xml"
SHARED = "xl/sharedStrings.xml"
CONTENT_TYPES = "[Content_Types].xml"
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def wide_csv(path: Path, columns: int) -> Path:
    """A CSV whose header has ``columns`` distinct names, and one data row."""
    path.write_text(
        ",".join(f"c{i}" for i in range(columns)) + "\n" + ",".join("1" * columns) + "\n"
    )
    return path


def _workbook(path: Path, rows: list[list[object]]) -> Path:
    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    workbook.save(path)
    return path


def _rewrite(path: Path, parts: dict[str, bytes | Iterator[bytes]]) -> Path:
    """``path`` with the zip members ``parts`` replaced (streamed, deflated)."""
    original = path.with_suffix(".orig")
    path.rename(original)
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            body = parts.get(info.filename)
            if body is None:
                target.writestr(info, source.read(info.filename))
                continue
            if isinstance(body, bytes):
                body = iter([body])
            with target.open(_deflated(info.filename), "w") as out:
                for chunk in body:
                    out.write(chunk)
        for name in parts.keys() - set(source.namelist()):
            body = parts[name]
            with target.open(_deflated(name), "w") as out:
                for chunk in [body] if isinstance(body, bytes) else body:
                    out.write(chunk)
    original.unlink()
    return path


def with_dimension(path: Path, dimension: str, rows: list[list[object]] | None = None) -> Path:
    """A small XLSX whose first sheet claims ``dimension`` (e.g. ``A1:XFD1048576``)."""
    _workbook(path, rows or [["id", "name"], [1, "one"]])
    with zipfile.ZipFile(path) as archive:
        sheet = archive.read(SHEET).decode()
    sheet = re.sub(r'<dimension ref="[^"]*"', f'<dimension ref="{dimension}"', sheet)
    return _rewrite(path, {SHEET: sheet.encode()})


def far_row(path: Path, row: int) -> Path:
    """An XLSX with a header in row 1 and one value in row ``row``, with a truthful
    dimension: the rows between are empty, and a reader walks every one of them."""
    _workbook(path, [["id"], [1]])
    with zipfile.ZipFile(path) as archive:
        sheet = archive.read(SHEET).decode()
    sheet = re.sub(r'<dimension ref="[^"]*"', f'<dimension ref="A1:A{row}"', sheet)
    far = f'<row r="{row}"><c r="A{row}"><v>1</v></c></row>'
    sheet = re.sub(r'<row r="2"[^>]*>.*?</row>', far, sheet)
    return _rewrite(path, {SHEET: sheet.encode()})


def shared_strings(count: int, text: str = "ab") -> Iterator[bytes]:
    """A shared-strings part of ``count`` copies of ``text``, generated in chunks."""
    yield (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<sst xmlns="{_MAIN}" count="{count}" uniqueCount="{count}">'
    ).encode()
    chunk = f"<si><t>{text}</t></si>".encode() * 10_000
    for _ in range(count // 10_000):
        yield chunk
    yield f"<si><t>{text}</t></si>".encode() * (count % 10_000) + b"</sst>"


def big_shared_strings(path: Path, count: int) -> Path:
    """A small XLSX with a shared-strings part of ``count`` strings (deflated, its 18 bytes
    a string shrink to a few hundredths of a byte). Nothing refers to them: a reader that
    loads the part whole pays for them anyway."""
    _workbook(path, [["id", "name"], [1, "one"]])
    with zipfile.ZipFile(path) as archive:
        types = archive.read(CONTENT_TYPES).decode()
    types = types.replace(
        "</Types>",
        '<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
    )
    return _rewrite(path, {CONTENT_TYPES: types.encode(), SHARED: shared_strings(count)})


def lying_sizes(path: Path, member: str, declared: int) -> Path:
    """``path`` with ``member``'s uncompressed size declared as ``declared`` bytes, in
    its local header and in the central directory, whatever it really holds."""
    raw = bytearray(path.read_bytes())
    name = member.encode()
    local = raw.find(b"PK\x03\x04")
    while local != -1:
        length = struct.unpack_from("<H", raw, local + 26)[0]
        if raw[local + 30 : local + 30 + length] == name:
            struct.pack_into("<I", raw, local + 22, declared)
        local = raw.find(b"PK\x03\x04", local + 4)
    central = raw.find(b"PK\x01\x02")
    while central != -1:
        length = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46 : central + 46 + length] == name:
            struct.pack_into("<I", raw, central + 24, declared)
        central = raw.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(raw))
    return path


def _deflated(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info
