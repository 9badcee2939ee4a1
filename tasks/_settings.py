"""Settings the domain job types share, read from ``JOBLEDGER_*`` like the ledger's own
(:mod:`app.config`): where ``import`` and ``sync`` may read from, and how big a record
file may be. A setting only one job type needs is declared in that job type's module
(``JOBLEDGER_EXPORT_DIR`` in :mod:`tasks.export_data`, the scheduled budgets in
:mod:`tasks.sync_and_suggest`). Read them with ``settings.of(Sources)``.
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from app.config import LOCAL_DIR, JobledgerSettings

#: The default (and only) folder local file sources are read from.
DATA_DIR = LOCAL_DIR / "data"


class Sources(JobledgerSettings):
    """What ``import`` and ``sync`` may read: files, URLs, databases."""

    #: Folders ``import``/``sync`` may read local files from, ``:`` separated (relative
    #: ones from the working directory). A path that resolves outside them is refused.
    source_roots: str = str(DATA_DIR)
    #: Networks (CIDRs, comma separated) that URL sources may reach although they are
    #: loopback, link-local or private; empty: only public addresses.
    source_allowed_networks: str = ""
    #: Database sources ``sync`` may read: a JSON object, name -> ``{"url", "tables",
    #: "tenants"…}`` (:mod:`tasks._database`). Empty: no job reaches any database but the
    #: ledger, through the ledger's own code.
    database_sources: str = ""

    @field_validator("source_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        """A typo here must stop the process, not quietly open or close a network."""
        for entry in value.replace(",", " ").split():
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not a network: give CIDRs such as 10.1.0.0/16 or "
                    "fd00::/8, comma separated"
                ) from None
        return value


class RecordLimits(JobledgerSettings):
    """How big a record file (``import``, ``sync``) and an import batch may be."""

    #: Most columns a record file may have: a CSV or XLSX header, a JSON object's keys,
    #: the columns of all a file's JSON lines together.
    import_max_columns: int = Field(default=1000, ge=1)
    #: Most cells of an XLSX sheet (rows times columns, empty rows counted as one cell),
    #: from its declared dimension before reading and as rows are read.
    import_max_cells: int = Field(default=10_000_000, ge=1)
    #: Most values (rows times their columns) one import batch holds, whatever its
    #: ``batch_size``: a batch's memory and the time a cancel waits for its write are
    #: bounded by this, not chosen by the payload (50,000 rows of 1,000 columns would be
    #: 50 million values).
    import_max_batch_cells: int = Field(default=200_000, ge=1)
    #: Longest row of a CSV or JSON-lines file, in bytes (a CSV row across lines counted
    #: whole).
    import_max_row_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Most bytes an XLSX (a zip archive) may decompress to, all its parts together,
    #: from the sizes the archive declares, checked before anything is decompressed.
    import_max_decompressed_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
