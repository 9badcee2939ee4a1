"""Typed job tasks, one module per job type.

``from tasks import …`` gives the task objects; importing this package also loads the
Celery application so producers get its broker settings. Job types: ``import``
(:mod:`tasks.import_data`), ``export`` (:mod:`tasks.export_data`), ``sync``
(:mod:`tasks.sync`), ``suggest`` (:mod:`tasks.suggest`) and the chain
``sync_and_suggest`` (:mod:`tasks.sync_and_suggest`); see ``docs/tasks.md``. Maintenance
jobs, recorded like any other: ``purge`` and ``lifeline`` (see ``docs/operations.md``);
and ``settle_counts``, a plain task that keeps the status counts (not a job).
"""

import app.celery  # noqa: F401  (configure the Celery app before the tasks bind to it)
from tasks.export_data import export_data
from tasks.import_data import import_data
from tasks.lifeline import lifeline
from tasks.purge import purge
from tasks.settle_counts import settle_counts
from tasks.suggest import suggest
from tasks.sync import sync
from tasks.sync_and_suggest import sync_and_suggest

__all__ = [
    "export_data",
    "import_data",
    "lifeline",
    "purge",
    "settle_counts",
    "suggest",
    "sync",
    "sync_and_suggest",
]
