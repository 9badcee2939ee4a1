"""Typed job tasks, one module per job type.

``from tasks import …`` gives the task objects; importing this package also loads the
Celery application so producers get its broker settings. Job types: ``import``
(:mod:`tasks.import_data`), ``export`` (:mod:`tasks.export_data`), ``sync``
(:mod:`tasks.sync`), ``suggest`` (:mod:`tasks.suggest`), the chain ``sync_and_suggest``
(:mod:`tasks.sync_and_suggest`) and its scheduled form ``scheduled_sync_and_suggest``,
``suggestions_apply``, ``suggestions_retry_payee``, ``snapshot_create``,
``snapshot_redownload``, ``validation``, ``test_run`` and ``interface_run`` (each in the
module of its name); see ``docs/tasks.md``. Maintenance
job types live apart, in :mod:`tasks.maintenance`: ``purge`` and ``lifeline`` (jobs,
recorded like any other; see ``docs/operations.md``) and ``settle_counts``, the job that
settles the status counts and the trend rollups.

A new job type is one module here and nothing else: every module of this package whose
name does not start with ``_`` is imported with it, so workers, beat and producers all
register it (``from tasks.<module> import <task>`` to call it).
"""

import importlib
import pkgutil

import app.celery  # noqa: F401  (configure the Celery app before the tasks bind to it)
from tasks.export_data import export_data
from tasks.import_data import import_data
from tasks.interface_run import interface_run
from tasks.maintenance.lifeline import lifeline
from tasks.maintenance.purge import purge
from tasks.maintenance.settle_counts import settle_counts
from tasks.scheduled_sync_and_suggest import scheduled_sync_and_suggest
from tasks.snapshot_create import snapshot_create
from tasks.snapshot_redownload import snapshot_redownload
from tasks.suggest import suggest
from tasks.suggestions_apply import suggestions_apply
from tasks.suggestions_retry_payee import suggestions_retry_payee
from tasks.sync import sync
from tasks.sync_and_suggest import sync_and_suggest
from tasks.test_run import test_run
from tasks.validation import validation

__all__ = [
    "export_data",
    "import_data",
    "interface_run",
    "lifeline",
    "purge",
    "scheduled_sync_and_suggest",
    "settle_counts",
    "snapshot_create",
    "snapshot_redownload",
    "suggest",
    "suggestions_apply",
    "suggestions_retry_payee",
    "sync",
    "sync_and_suggest",
    "test_run",
    "validation",
]


def _import_every_job_type() -> None:
    """Import the modules not named above too: a job type needs no line in this file."""
    for module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        if not any(part.startswith("_") for part in module.name.split(".")):
            importlib.import_module(module.name)


_import_every_job_type()
