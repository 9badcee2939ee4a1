"""The installed jobledger's version, as pip shows it (``jobledger --version``, the
OpenAPI document's ``info.version``)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed


def version() -> str:
    """The version in the package's metadata; a checkout never installed has none."""
    try:
        return installed("jobledger")
    except PackageNotFoundError:
        return "unknown (not installed)"
