"""Every error jobledger raises on purpose; each message says what to do next."""

from __future__ import annotations


class JobledgerError(Exception):
    """Base of jobledger's own errors."""


class InvalidPayload(JobledgerError, ValueError):
    """A job's payload failed validation at ``delay()``/the API; nothing was queued or
    written. ``fields`` maps each offending field (dotted path) to its problem."""

    def __init__(self, job_type: str, fields: dict[str, str]) -> None:
        self.job_type = job_type
        self.fields = fields
        detail = "; ".join(f"field {name!r}: {problem}" for name, problem in fields.items())
        super().__init__(
            f"invalid payload for job type {job_type!r}: {detail}. "
            "Fix the payload and submit again; nothing was queued."
        )


class InvalidJobId(JobledgerError, ValueError):
    """A job reference is neither a UUID nor a run name."""

    def __init__(self, value: object) -> None:
        super().__init__(
            f"{value!r} is not a job id: give the job's UUID "
            "(e.g. 2f1c…-…) or its run name (YYYYMMDDhhmmss or YYYYMMDDhhmmss_N)"
        )


class InvalidLedgerHeader(JobledgerError, ValueError):
    """A message's ``jobledger`` header names no valid job or step."""

    def __init__(self, task_id: str, problem: str) -> None:
        super().__init__(
            f"message {task_id}: its jobledger header {problem}; publish jobs with "
            "delay()/apply_async() of a job task, which writes the header"
        )


class JobNotFound(JobledgerError, LookupError):
    """No job has that id or name."""

    def __init__(self, ref: object) -> None:
        super().__init__(f"no job {ref!s} in the ledger: check the id with `jobledger jobs`")


class TransitionRefused(JobledgerError):
    """An operator asked for a transition the state machine does not allow."""

    def __init__(self, job_id: object, status: str, action: str, allowed: str) -> None:
        self.status = status
        super().__init__(
            f"cannot {action} job {job_id}: it is {status}; {action} applies to {allowed} jobs"
        )


class PayloadNotKept(TransitionRefused):
    """A manual retry needs the job's payload, but the ledger keeps it redacted."""

    def __init__(self, job_id: object) -> None:
        JobledgerError.__init__(
            self,
            f"cannot retry job {job_id}: its payload held secrets, which the ledger stores "
            "masked (***); submit the job again from its producer",
        )
        self.status = "redacted"


class LedgerUnavailable(JobledgerError):
    """The ledger database could not be written after retries."""

    def __init__(self, what: str, cause: BaseException) -> None:
        driver_error = getattr(cause, "orig", cause)
        if str(getattr(driver_error, "sqlite_errorname", "")).startswith("SQLITE_BUSY"):
            # The file is there and answers: it was locked by another writer throughout.
            super().__init__(
                f"could not write {what} to the ledger: the SQLite file stayed locked by "
                "another connection's write transaction throughout the retries (SQLite takes "
                "one writer at a time); a transaction held open for long, in this process "
                "or another, keeps every other write out. Many writers at once: use "
                "PostgreSQL (JOBLEDGER_DATABASE_URL)"
            )
            return
        super().__init__(
            f"could not write {what} to the ledger ({type(cause).__name__}): check that the "
            "database in JOBLEDGER_DATABASE_URL is up and migrated (`jobledger migrate`)"
        )


class JobCanceled(JobledgerError):
    """Raised inside a running job at a checkpoint once a cancel was requested."""

    def __init__(self, reason: str = "canceled on request") -> None:
        self.reason = reason
        super().__init__(reason)


class JobFailed(JobledgerError):
    """Raise from a job body to fail the job with a user-safe reason (no traceback noise)."""

    def __init__(self, reason: str, errors: list[dict[str, object]] | None = None) -> None:
        self.reason = reason
        self.errors = errors or []
        super().__init__(reason)


class IdempotencyConflict(JobledgerError):
    """An idempotency key was used before for a different request; nothing was created."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"idempotency key {key!r} was used for a different request (type, payload or "
            "subject differ): send that request again, or use a new key for this one"
        )


class InvalidIdempotencyKey(JobledgerError, ValueError):
    """An idempotency key that is empty, too long or holds unprintable characters."""

    def __init__(self, max_length: int) -> None:
        super().__init__(
            f"an idempotency key is 1 to {max_length} printable characters "
            "(a UUID per request is a good choice)"
        )


class JobTypeSettingsMisconfigured(JobledgerError, ValueError):
    """A per-type setting (``JOBLEDGER_QUEUES``, ``…_PRIORITIES``, ``…_RETRY_POLICIES``,
    ``…_RATE_LIMITS``) names a job type that does not exist (a misspelling would leave
    the real type on its defaults); the message names the setting and lists the types."""


class TimeLimitsMisconfigured(JobTypeSettingsMisconfigured):
    """``JOBLEDGER_TIME_LIMITS`` names a job type that does not exist (a misspelling
    would leave the real type on the default limits); the message lists the types."""


class DefinitionExists(JobledgerError):
    """A definition of that name exists in the tenant already; nothing was written."""

    def __init__(self, tenant: str, name: str) -> None:
        self.tenant = tenant
        self.name = name
        super().__init__(
            f"a definition named {name!r} exists already (tenant {tenant!r}): choose another "
            "name, or change that one"
        )


class DefinitionNotFound(JobledgerError, LookupError):
    """No definition of that name in the tenant."""

    def __init__(self, tenant: str, name: str) -> None:
        super().__init__(
            f"no definition named {name!r} in tenant {tenant!r}: "
            "list them with `jobledger definitions list`"
        )


class DefinitionArchived(JobledgerError):
    """An archived definition cannot run (unarchive it first); nothing was created."""

    def __init__(self, tenant: str, name: str) -> None:
        super().__init__(
            f"definition {name!r} (tenant {tenant!r}) is archived: set archived to false "
            "to run it again"
        )


class OperationTooLarge(JobledgerError, ValueError):
    """A bulk operation would act on more jobs than one request may; nothing was done."""

    def __init__(self, matched: int, limit: int) -> None:
        self.matched = matched
        self.limit = limit
        super().__init__(
            f"filter: {matched} jobs match, more than one bulk operation may act on "
            f"(JOBLEDGER_BULK_MAX_JOBS={limit}); narrow the filter (created_before, type, "
            "queue…) and run it in parts under different names"
        )


class OperationConflict(JobledgerError):
    """An operation of that name exists with another action or filter; nothing was done."""

    def __init__(self, tenant: str, name: str) -> None:
        self.name = name
        super().__init__(
            f"operation {name!r} (tenant {tenant!r}) exists with another action or filter: "
            "running the same operation again needs the same action and filter; choose "
            "another name for a new one"
        )


class OperationNotFound(JobledgerError, LookupError):
    """No bulk operation with that id (or name) in the tenant."""

    def __init__(self, ref: object) -> None:
        super().__init__(f"no operation {ref!r}: list them with `jobledger operations list`")
