"""Settings read once from the environment (12-factor), as one object.

Every knob is a ``JOBLEDGER_*`` variable; ``settings()`` parses them the first time it is
called and caches the result, so tests that change the environment call
``settings.cache_clear()``.

The defaults run with no server at all: an SQLite file for the ledger and Kombu's
``filesystem://`` broker (works across processes, see CELERY_NOTES "Brokers with no
server"), both under ``./var``. Production and the tests use PostgreSQL and Redis.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_DIR = Path("var")
#: The default (and only) folder local file sources are read from.
DATA_DIR = LOCAL_DIR / "data"


class TimeLimits(BaseModel):
    """Soft and hard time limits of a job type, in seconds (see :class:`Settings`)."""

    model_config = ConfigDict(extra="forbid")

    #: The job gets ``SoftTimeLimitExceeded`` in its body and ends ``failed``.
    soft: float | None = Field(default=None, gt=0)
    #: The worker kills the process running the job; it ends ``failed``.
    hard: float | None = Field(default=None, gt=0)


class Settings(BaseSettings):
    """The whole configuration of a jobledger process."""

    model_config = SettingsConfigDict(env_prefix="JOBLEDGER_", extra="ignore")

    #: SQLAlchemy URL of the ledger.
    database_url: str = f"sqlite:///{LOCAL_DIR / 'jobledger.sqlite3'}"
    #: Celery broker URL; empty means the embedded filesystem broker under ``./var``.
    broker_url: str = ""
    #: Terminal jobs whose ``completed_at`` is older than this are purged.
    retention_days: int = Field(default=30, ge=1)
    #: When set, purged jobs are first written there as gzip JSON lines.
    archive_dir: Path | None = None
    #: Where ``export`` jobs write their files (``JOBLEDGER_EXPORT_DIR``).
    export_dir: Path = LOCAL_DIR / "exports"
    #: Seconds a Redis message may stay unacknowledged before it is delivered again.
    #: Must exceed the longest job: a job still running then is started a second time.
    visibility_timeout: int = Field(default=3600, ge=60)
    #: Messages each worker process reserves ahead (Celery's prefetch multiplier).
    prefetch_multiplier: int = Field(default=4, ge=1)
    #: Extra modules that define job tasks, comma separated (the tests add their examples).
    extra_task_modules: str = ""
    #: Minimum seconds between two progress writes of one job (progress is throttled).
    progress_interval: float = Field(default=0.5, ge=0)
    #: How long a ledger write is retried while the database is unreachable.
    write_retry_seconds: float = Field(default=30, ge=0)
    #: Connections each process keeps to the ledger (workers are processes, keep it small).
    db_pool_size: int = Field(default=2, ge=1)
    #: Prepare the per-job statements once per connection (PostgreSQL). Switch off behind
    #: a pooler that shares server connections between clients (PgBouncer, transaction
    #: mode): the statements are then sent as text.
    prepared_statements: bool = True
    #: Seconds without a heartbeat after which the lifeline treats a running job as orphaned.
    lifeline_timeout: int = Field(default=300, ge=1)
    #: Executions of one job that may end without an outcome (their pool process or whole
    #: worker died: killed, out of memory) before the next delivery fails the job instead
    #: of running it again (a poison message).
    max_lost_executions: int = Field(default=3, ge=1)
    #: Seconds a message must have been reserved (Redis ``unacked``) before the lifeline
    #: may give it back to its queue when no live worker holds it. Covers the moment
    #: between a worker taking a message and listing it as reserved.
    reservation_grace: float = Field(default=60, gt=0)
    #: Seconds the lifeline and a start wait for workers to answer who is alive.
    worker_reply_timeout: float = Field(default=2.0, gt=0)
    #: Seconds between two lifeline passes scheduled by beat.
    lifeline_interval: float = Field(default=60, gt=0)
    #: Seconds between two settles of the status counts (:mod:`app.ledger.reads.counts`).
    settle_interval: float = Field(default=60, gt=0)
    #: Scheduled sync runs: JSON object/list or ``budget_id=source`` pairs, comma separated.
    scheduled_budgets: str = ""
    #: Seconds between two scheduled ``sync_and_suggest`` runs of each budget.
    sync_interval: float = Field(default=3600, gt=0)
    #: UTC time of day (``HH:MM``) of the daily retention purge.
    purge_at: str = "03:30"
    #: Most jobs deleted per purge transaction (short transactions keep writers unblocked: 500
    #: measured up to 1.08 s per batch on 2 loaded cores; 200: at most 0.43 s at 200k jobs).
    purge_batch_size: int = Field(default=200, ge=1)
    #: Target seconds of one purge transaction: longer batches make the next ones smaller
    #: (:mod:`app.ledger.operations.purge_pacing`); 0 keeps every batch at ``purge_batch_size``.
    purge_batch_seconds: float = Field(default=0.25, ge=0)
    #: The purge pauses this many times each batch's duration after it (pt-archiver's
    #: ``--sleep-coef``), leaving the machine to ingest; 0 never pauses. Why 3: the
    #: measurements in :mod:`app.ledger.operations.purge_pacing`.
    purge_pause_factor: float = Field(default=3.0, ge=0)
    #: VACUUM (ANALYZE) the purged tables after a purge that deleted jobs (PostgreSQL).
    purge_vacuum: bool = True
    #: HTTP API keys, a JSON object: SHA-256 (hex) of each key -> ``{"name", "tenant"}``.
    #: Parsed by :mod:`app.api.auth` (a mistake there stops the API, not the workers);
    #: empty means the API refuses every request. See docs/api.md.
    api_keys: str = ""
    #: Job types the HTTP API may create, comma separated; empty: every job type except
    #: the maintenance ones (``purge``, ``lifeline``).
    api_job_types: str = ""
    #: Largest request body the HTTP API reads, in bytes; a larger one is answered 413
    #: before it is read (or as soon as a chunked upload passes it).
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    #: Seconds a dashboard login lasts (its server-side session), unless logged out.
    dashboard_session_seconds: int = Field(default=8 * 3600, ge=60)
    #: Dashboard login attempts one client address may make per minute, per API process.
    dashboard_logins_per_minute: int = Field(default=10, ge=1)
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

    #: Hard time limit of every job, in seconds (Celery's ``time_limit``): the worker
    #: kills the process running a job this long and the job ends ``failed`` ("timed out
    #: after N s"). Keep it below ``JOBLEDGER_VISIBILITY_TIMEOUT``, or Redis hands a job
    #: still running to a second worker first.
    time_limit: float = Field(default=3300, gt=0)
    #: Soft time limit of every job, in seconds (``soft_time_limit``): the body gets
    #: ``SoftTimeLimitExceeded`` and the job ends ``failed``; below ``time_limit``.
    soft_time_limit: float = Field(default=3000, gt=0)
    #: Per job type, JSON: ``{"export": {"soft": 600, "hard": 660}}``. A type not listed,
    #: or a limit not given, takes the defaults above (a soft limit not given and not
    #: below the type's hard one becomes 90 % of it). ``apply_async(time_limit=…,
    #: soft_time_limit=…)`` overrides both for one job.
    time_limits: dict[str, TimeLimits] = Field(default_factory=dict)

    #: Most columns a record file (``import``, ``sync``) may have: a CSV or XLSX header,
    #: a JSON object's keys, the columns of all a file's JSON lines together.
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

    @model_validator(mode="after")
    def _soft_before_hard(self) -> Settings:
        checked = [("the defaults", (self.soft_time_limit, self.time_limit))] + [
            (f"JOBLEDGER_TIME_LIMITS[{name!r}]", self.time_limits_of(name))
            for name in self.time_limits
        ]
        for where, (soft, hard) in checked:
            if soft >= hard:
                raise ValueError(
                    f"{where}: the soft time limit ({soft:g} s) must be below the hard one "
                    f"({hard:g} s), or the job is killed before it can stop cleanly"
                )
        return self

    def time_limits_of(self, job_type: str) -> tuple[float, float]:
        """``(soft, hard)`` time limits of ``job_type``, in seconds."""
        own = self.time_limits.get(job_type) or TimeLimits()
        hard = own.hard or self.time_limit
        if own.soft is not None:
            return own.soft, hard
        # A type given only a hard limit below the default soft one stops softly at 90 %.
        return (self.soft_time_limit if self.soft_time_limit < hard else hard * 0.9), hard

    @field_validator("database_url")
    @classmethod
    def _driver(cls, url: str) -> str:
        """Plain ``postgresql://`` URLs use psycopg2 (the driver jobledger ships with);
        SQLAlchemy 2.1 would otherwise look for psycopg 3."""
        return normalize_database_url(url)

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

    def broker(self) -> str:
        """The broker URL, falling back to the embedded filesystem broker."""
        return self.broker_url or "filesystem://"

    def task_modules(self) -> list[str]:
        """Modules the Celery app imports to register job tasks."""
        extra = [name.strip() for name in self.extra_task_modules.split(",") if name.strip()]
        return ["tasks", *extra]


def normalize_database_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` become ``postgresql+psycopg2://``."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings of this process, parsed once."""
    return Settings()
