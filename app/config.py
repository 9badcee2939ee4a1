"""Settings read once from the environment (12-factor), one object per concern.

Every knob is a ``JOBLEDGER_*`` variable. :class:`Settings` holds what the ledger, the
Celery wiring, the API and maintenance need; a job type declares its own settings next
to it in ``tasks/`` (a :class:`JobledgerSettings` subclass, same prefix). ``settings()``
parses :class:`Settings` the first time it is called and ``settings.of(Kind)`` a job
type's; both are cached, and tests that change the environment call
``settings.cache_clear()``, which forgets them all.

The defaults run with no server at all: an SQLite file for the ledger and Kombu's
``filesystem://`` broker (a folder shared by every process on the machine), both under
``./var``. Production and the tests use PostgreSQL and Redis.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.ledger.rules.retries import RetryPolicy

#: What a queue name may look like (letters, digits, ``_ . : -``; up to 128 characters).
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
#: A Celery rate limit: jobs per second, minute or hour (``10/m``, ``0.5/s``).
RATE = re.compile(r"^\d+(\.\d+)?/[smh]$")
#: Where the embedded defaults keep their files (the SQLite ledger, the broker folder).
LOCAL_DIR = Path("var")


class JobledgerSettings(BaseSettings):
    """Settings of one concern, each field read from ``JOBLEDGER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="JOBLEDGER_", extra="ignore")


class TimeLimits(BaseModel):
    """Soft and hard time limits of a job type, in seconds (see :class:`Settings`)."""

    model_config = ConfigDict(extra="forbid")

    #: The job gets ``SoftTimeLimitExceeded`` in its body and ends ``failed``, unless the
    #: body catches it (``SoftTimeLimit``, :mod:`app.ledger.runtime.context`).
    soft: float | None = Field(default=None, gt=0)
    #: The worker kills the process running the job; it ends ``failed``.
    hard: float | None = Field(default=None, gt=0)


class Settings(JobledgerSettings):
    """The configuration of the ledger, its Celery wiring, the API and maintenance."""

    #: SQLAlchemy URL of the ledger.
    database_url: str = f"sqlite:///{LOCAL_DIR / 'jobledger.sqlite3'}"
    #: Celery broker URL; empty means the embedded filesystem broker under ``./var``.
    broker_url: str = ""
    #: Terminal jobs whose ``completed_at`` is older than this are purged.
    retention_days: int = Field(default=30, ge=1)
    #: When set, purged jobs are first written there as gzip JSON lines.
    archive_dir: Path | None = None
    #: Seconds a Redis message may stay unacknowledged before it is delivered again.
    #: Must exceed the longest job: a job still running then is started a second time.
    visibility_timeout: int = Field(default=3600, ge=60)
    #: Messages each worker process reserves ahead (Celery's prefetch multiplier).
    prefetch_multiplier: int = Field(default=4, ge=1)
    #: Extra modules that define job tasks, comma separated (the tests add their examples).
    extra_task_modules: str = ""
    #: Minimum seconds between two progress writes of one job (progress is throttled).
    progress_interval: float = Field(default=0.5, ge=0)
    #: Seconds a plain job's ``running`` waits to be written after its body started (the
    #: lazy start, :mod:`app.ledger.runtime.lazy_start`): a job that finishes sooner
    #: writes its start and its outcome in one statement. The body's first progress,
    #: checkpoint, log line, file or metadata note writes it at once. 0: written before
    #: the body runs.
    lazy_start_seconds: float = Field(default=0.2, ge=0)
    #: Write quick jobs' outcomes from the worker's main process, every outcome that
    #: arrived meanwhile in one statement and one commit, their messages acknowledged
    #: after it (:mod:`app.ledger.runtime.outcome_writer`). False: each pool process
    #: writes its own jobs' outcomes. Prefork pools on PostgreSQL only.
    group_commit: bool = True
    #: Seconds the group commit waits for more outcomes before writing (0: it writes as
    #: soon as it is free; outcomes that arrive during a write go in the next one). The
    #: default 0.02 was measured (benchmarks/RESULTS.md, seventh session): with 0 the
    #: batches held 1.2 jobs and the group commit drained slower than each pool process
    #: writing its own; with 0.02 they held about 4 and it drained faster.
    group_commit_wait: float = Field(default=0.02, ge=0, le=60)
    #: How long a ledger write is retried while the database is unreachable.
    write_retry_seconds: float = Field(default=30, ge=0)
    #: Seconds a PostgreSQL connection of the ledger may stay silent on a dead network (a
    #: partition, a host gone without a reset) before it counts as broken, so the write
    #: is retried on a new connection (``JOBLEDGER_WRITE_RETRY_SECONDS``) instead of
    #: waiting for the kernel's own timeout (about 15 minutes): libpq's
    #: ``connect_timeout``, ``tcp_user_timeout`` and TCP keepalives
    #: (:func:`app.db.network_parameters`). 0: the operating system's defaults.
    db_network_timeout: float = Field(default=30, ge=0)
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
    #: UTC time of day (``HH:MM``) of the daily retention purge.
    purge_at: str = "03:30"
    #: Most jobs deleted per purge transaction: short transactions keep writers unblocked
    #: (why 200: benchmarks/RESULTS.md, "Purge").
    purge_batch_size: int = Field(default=200, ge=1)
    #: Target seconds of one purge transaction: longer batches make the next ones smaller
    #: (:mod:`app.ledger.operations.purge_pacing`); 0 keeps every batch at ``purge_batch_size``.
    purge_batch_seconds: float = Field(default=0.25, ge=0)
    #: The purge pauses this many times each batch's duration after it (pt-archiver's
    #: ``--sleep-coef``), leaving the machine to ingest; 0 never pauses. Why 3:
    #: benchmarks/RESULTS.md, "Pause factor".
    purge_pause_factor: float = Field(default=3.0, ge=0)
    #: VACUUM (ANALYZE) the purged tables after a purge that deleted jobs (PostgreSQL).
    purge_vacuum: bool = True
    #: HTTP API keys, a JSON object: SHA-256 (hex) of each key -> ``{"name", "tenant",
    #: "role"}`` (role ``viewer``, ``operator`` or ``admin``; ``admin`` when left out).
    #: Parsed by :mod:`app.api.auth` (a mistake there stops the API, not the workers);
    #: empty means the API refuses every request. See docs/api.md.
    api_keys: str = ""
    #: Job types the HTTP API may create, comma separated; empty: every job type except
    #: the maintenance ones (``purge``, ``lifeline``).
    api_job_types: str = ""
    #: Largest request body the HTTP API reads, in bytes; a larger one is answered 413
    #: before it is read (or as soon as a chunked upload passes it).
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    #: SHA-256 (hex) of the key Prometheus presents to ``GET /metrics`` (``Authorization:
    #: Bearer <key>``); see :mod:`app.api.metrics` for who may read it.
    metrics_key: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")
    #: Serve ``GET /metrics`` to anyone (a private network): off by default.
    metrics_open: bool = False
    #: Seconds a dashboard login lasts (its server-side session), unless logged out.
    dashboard_session_seconds: int = Field(default=8 * 3600, ge=60)
    #: Dashboard login attempts one client address may make per minute, per API process.
    dashboard_logins_per_minute: int = Field(default=10, ge=1)
    #: Most jobs one bulk operation (cancel or retry over a filter) may act on; a filter
    #: matching more is refused (narrow it, run it in parts).
    bulk_max_jobs: int = Field(default=10_000, ge=1)
    #: Jobs a bulk operation acts on between two progress writes (``done`` of ``matched``).
    bulk_batch_size: int = Field(default=200, ge=1)

    #: Hard time limit of every job, in seconds (Celery's ``time_limit``): the worker
    #: kills the process running a job this long and the job ends ``failed`` ("timed out
    #: after N s"). Keep it below ``JOBLEDGER_VISIBILITY_TIMEOUT``, or Redis hands a job
    #: still running to a second worker first.
    time_limit: float = Field(default=3300, gt=0)
    #: Soft time limit of every job, in seconds (``soft_time_limit``): the body gets
    #: ``SoftTimeLimitExceeded`` and the job ends ``failed`` unless the body catches it;
    #: below ``time_limit``.
    soft_time_limit: float = Field(default=3000, gt=0)
    #: Per job type, JSON: ``{"export": {"soft": 600, "hard": 660}}``. A type not listed,
    #: or a limit not given, takes the defaults above (a soft limit not given and not
    #: below the type's hard one becomes 90 % of it). ``apply_async(time_limit=…,
    #: soft_time_limit=…)`` overrides both for one job.
    time_limits: dict[str, TimeLimits] = Field(default_factory=dict)

    #: Queue per job type, JSON: ``{"export": "bulk"}``. A type not listed goes to the
    #: queue its module declares (``job_task(..., queue=…)``), else ``celery`` (see
    #: :mod:`app.queues`). Workers started without ``-Q`` consume every queue.
    queues: dict[str, str] = Field(default_factory=dict)
    #: Default priority per job type, JSON: ``{"export": 2, "import": 7}``; 0 (least
    #: urgent) to 9 (most urgent); a type not listed gets 5. ``apply_async(priority=…)``
    #: (the API's ``priority``) overrides it for one job (:mod:`app.queues`).
    priorities: dict[str, Annotated[int, Field(ge=0, le=9, strict=True)]] = Field(
        default_factory=dict
    )
    #: Retry policy per job type, JSON: ``{"sync": {"retry_on": ["ConnectionError"],
    #: "max_attempts": 5, "backoff": 2, "backoff_max": 300, "jitter": true}}``; replaces
    #: the policy the type's module gives (:mod:`app.ledger.rules.retries`).
    retry_policies: dict[str, RetryPolicy] = Field(default_factory=dict)
    #: Celery rate limit per job type, JSON: ``{"export": "10/m"}`` (``N/s``, ``N/m``,
    #: ``N/h``). Per worker process group: each worker starts at most that many jobs of
    #: the type (Celery's ``rate_limit``), so N workers may start N times as many.
    rate_limits: dict[str, str] = Field(default_factory=dict)

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

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, queues: dict[str, str]) -> dict[str, str]:
        for job_type, queue in queues.items():
            if not QUEUE_NAME.match(queue):
                raise ValueError(
                    f"JOBLEDGER_QUEUES[{job_type!r}]: {queue!r} is not a queue name "
                    f"({QUEUE_NAME.pattern})"
                )
        return queues

    @field_validator("rate_limits")
    @classmethod
    def _rate_strings(cls, limits: dict[str, str]) -> dict[str, str]:
        for job_type, rate in limits.items():
            if not RATE.match(rate):
                raise ValueError(
                    f"JOBLEDGER_RATE_LIMITS[{job_type!r}]: {rate!r} is not a rate such as "
                    "'10/m' (a number of jobs per s, m or h)"
                )
        return limits

    @field_validator("database_url")
    @classmethod
    def _driver(cls, url: str) -> str:
        """Plain ``postgresql://`` URLs use psycopg2 (the driver jobledger ships with);
        SQLAlchemy 2.1 would otherwise look for psycopg 3."""
        return normalize_database_url(url)

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


Kind = TypeVar("Kind", bound=BaseSettings)


class _Reader:
    """``settings()``, ``settings.of(Kind)`` and ``settings.cache_clear()``."""

    def __init__(self) -> None:
        self._read: dict[type[BaseSettings], BaseSettings] = {}

    def __call__(self) -> Settings:
        """The settings of this process, parsed once (read on every ledger write: the
        parsed object is returned without another call)."""
        found = self._read.get(Settings)
        return found if isinstance(found, Settings) else self.of(Settings)

    def of(self, kind: type[Kind]) -> Kind:
        """The ``kind`` settings of this process (a job type's), parsed once."""
        found = self._read.get(kind)
        if found is None:  # two threads may both parse; setdefault keeps one of them
            found = self._read.setdefault(kind, kind())
        return cast(Kind, found)

    def cache_clear(self) -> None:
        """Forget every parsed settings object: the next call reads the environment."""
        self._read.clear()


settings = _Reader()
