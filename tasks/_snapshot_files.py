"""Where snapshot files live: each tenant's own folder, and the paths that may be read
or written there.

Usage::

    folder = tenant_folder("acme")                       # <JOBLEDGER_SNAPSHOT_DIR>/acme
    path = snapshot_path("acme", "household", job_id)    # …/acme/household/<job id>.snapshot.jsonl
    real = confined_snapshot("acme", "/srv/snap/acme/x.snapshot.jsonl")  # or SnapshotRefused

``snapshot_create`` writes inside the job's tenant's folder only (the names in the path
are pattern-checked: no ``/``, no ``..``); ``snapshot_redownload`` reads a local file
only when its real path (symlinks and ``..`` resolved, :func:`tasks._confine.confined_path`)
lies inside that same folder, so one tenant never reads another's snapshots by naming a
path. URLs are fetched through :mod:`tasks._confine`'s guarded client like every source.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from pydantic import Field

from app.config import LOCAL_DIR, JobledgerSettings, settings
from tasks._confine import SourceRefused, confined_path
from tasks._sources import local_path

#: The end of every snapshot file's name.
SUFFIX = ".snapshot.jsonl"


class SnapshotSettings(JobledgerSettings):
    """Settings of ``snapshot_create`` and ``snapshot_redownload``."""

    #: The folder of the tenants' snapshot folders (``JOBLEDGER_SNAPSHOT_DIR``).
    snapshot_dir: Path = LOCAL_DIR / "snapshots"
    #: Largest snapshot ``snapshot_redownload`` reads, in bytes (``JOBLEDGER_SNAPSHOT_MAX_BYTES``):
    #: a restore is one database transaction of that size, and a URL source could send
    #: without end.
    #: A larger one fails the ``size`` check as soon as the limit is passed.
    snapshot_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)


class SnapshotRefused(ValueError):
    """A local snapshot path outside the tenant's folder; ``str()`` says so."""


def tenant_folder(tenant: str) -> Path:
    """The tenant's snapshot folder (absolute, symlinks resolved; it may not exist yet)."""
    return (settings.of(SnapshotSettings).snapshot_dir / tenant).resolve()


def snapshot_path(tenant: str, budget_id: str, job_id: uuid.UUID) -> Path:
    """Where ``snapshot_create`` job ``job_id`` writes (tenant and budget are names that
    hold no ``/`` and do not start with a dot, so the path stays in the folder)."""
    return tenant_folder(tenant) / budget_id / f"{job_id}{SUFFIX}"


def confined_snapshot(tenant: str, location: str) -> Path:
    """The real path of a local snapshot (a path or ``file://`` URL) if it lies inside
    ``tenant``'s folder.

    Raises:
        SnapshotRefused: it resolves outside the folder (``..``, a symlink, another
            tenant's folder, anywhere else), whether or not it exists.
    """
    folder = tenant_folder(tenant)
    try:
        return confined_path(local_path(location), roots=[folder])
    except SourceRefused:
        raise SnapshotRefused(
            f"snapshot file {location} is outside tenant {tenant!r}'s snapshot folder "
            "(JOBLEDGER_SNAPSHOT_DIR/<tenant>); a snapshot is read only from there"
        ) from None
