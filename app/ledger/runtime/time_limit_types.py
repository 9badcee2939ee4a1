"""``JOBLEDGER_TIME_LIMITS`` (and every other per-type setting: ``JOBLEDGER_QUEUES``,
``…_PRIORITIES``, ``…_RETRY_POLICIES``, ``…_RATE_LIMITS``) names job types that exist.

The per-type map is read by :func:`app.ledger.runtime.task.job_task` when each type is made, by
name: a misspelt type (``{"exprot": …}``) would match nothing and the real type would
run with the defaults, silently. The settings cannot tell (the job types are known only
once their modules are imported), so the check runs where the registry is complete: at
worker and beat start (``worker_init``/``beat_init``, :mod:`app.ledger.runtime.signals`, which
stop the process), at the API's start (its lifespan) and before a producer publishes its first job
(:meth:`app.ledger.runtime.task.JobTask.apply_async`).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from app.config import settings
from app.exceptions import JobTypeSettingsMisconfigured, TimeLimitsMisconfigured

_checked = False


def job_types(app: Celery) -> list[str]:
    """Every job type the app knows, its task modules imported first (as a worker does)."""
    from app.ledger.runtime.task import JobTask  # late: app.ledger.runtime.task imports this module

    app.loader.import_default_modules()
    return sorted(name for name, task in app.tasks.items() if isinstance(task, JobTask))


def check_time_limit_types(app: Celery) -> None:
    """Refuse a ``JOBLEDGER_TIME_LIMITS`` (or another per-type setting) that names a type
    no task module defines.

    Once it has passed in a process it costs nothing (the settings are read once).

    Raises:
        TimeLimitsMisconfigured: ``JOBLEDGER_TIME_LIMITS`` names an unknown type.
        JobTypeSettingsMisconfigured: another per-type setting does; the message names
            the setting, the unknown types and the known ones.
    """
    global _checked  # once per process: the settings never change
    if _checked:
        return
    config = settings()
    per_type: dict[str, dict[str, Any]] = {
        "JOBLEDGER_TIME_LIMITS": config.time_limits,
        "JOBLEDGER_QUEUES": config.queues,
        "JOBLEDGER_PRIORITIES": config.priorities,
        "JOBLEDGER_RETRY_POLICIES": config.retry_policies,
        "JOBLEDGER_RATE_LIMITS": config.rate_limits,
    }
    if any(per_type.values()):
        known = job_types(app)
        for setting, configured in per_type.items():
            unknown = sorted(set(configured) - set(known))
            if unknown:
                error = (
                    TimeLimitsMisconfigured
                    if setting == "JOBLEDGER_TIME_LIMITS"
                    else JobTypeSettingsMisconfigured
                )
                raise error(
                    f"{setting} names job types that do not exist: "
                    f"{', '.join(map(repr, unknown))}; the job types are: {', '.join(known)}"
                )
    _checked = True
