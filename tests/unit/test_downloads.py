"""Which recorded files are served (app.downloads): inside the roots only, never through a
symlink or ``..``, regular files only; on a real filesystem under tmp_path."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from app.downloads import FileGone, FileRefused, chunks, open_recorded


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "exports" / "acme"
    folder.mkdir(parents=True)
    return Path(os.path.realpath(folder))


def test_a_file_inside_a_root_is_streamed_with_its_name_size_and_type(root: Path) -> None:
    target = root / "sales-1.csv"
    target.write_bytes(b"a,b\n" * 50_000)
    opened = open_recorded(target.as_uri(), [root])
    assert (opened.name, opened.size, opened.media_type) == ("sales-1.csv", 200_000, "text/csv")
    assert b"".join(chunks(opened.handle)) == target.read_bytes()
    assert opened.handle.closed


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("x.jsonl", "application/x-ndjson"),
        ("x.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("x.unknown-kind", "application/octet-stream"),
    ],
)
def test_media_types(root: Path, name: str, media_type: str) -> None:
    (root / name).write_bytes(b"{}")
    assert open_recorded((root / name).as_uri(), [root]).media_type == media_type


def test_a_file_outside_the_roots_is_refused(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "exports" / "globex"
    other.mkdir()
    (other / "theirs.csv").write_text("secret")
    with pytest.raises(FileRefused, match="outside the tenant's folders"):
        open_recorded((other / "theirs.csv").as_uri(), [root])


def test_a_symlinked_file_is_refused_even_to_a_file_inside(root: Path) -> None:
    (root / "real.csv").write_text("x")
    (root / "link.csv").symlink_to(root / "real.csv")
    with pytest.raises(FileRefused, match="symlink"):
        open_recorded((root / "link.csv").as_uri(), [root])


def test_a_symlinked_folder_on_the_way_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x")
    (root / "sub").symlink_to(outside)
    with pytest.raises(FileRefused, match="symlink"):
        open_recorded((root / "sub" / "passwd").as_uri(), [root])


def test_dot_dot_is_refused_even_when_it_lands_inside(root: Path) -> None:
    (root / "a.csv").write_text("x")
    with pytest.raises(FileRefused, match=re.escape("'..'")):
        open_recorded(f"file://{root}/../acme/a.csv", [root])


@pytest.mark.parametrize(
    "uri", ["https://example.com/a.csv", "file://otherhost/etc/passwd", "relative/a.csv"]
)
def test_only_local_absolute_file_uris(uri: str, root: Path) -> None:
    with pytest.raises(FileRefused):
        open_recorded(uri, [root])


def test_a_fifo_or_a_folder_is_refused_without_hanging(root: Path) -> None:
    os.mkfifo(root / "pipe.csv")
    (root / "folder.csv").mkdir()
    for name in ("pipe.csv", "folder.csv"):
        with pytest.raises(FileRefused, match="not a regular file"):
            open_recorded((root / name).as_uri(), [root])


def test_a_file_removed_since_is_gone(root: Path) -> None:
    with pytest.raises(FileGone):
        open_recorded((root / "removed.csv").as_uri(), [root])
