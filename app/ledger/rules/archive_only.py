"""Job types the retention purge may delete only once they are in its archive.

Seed 000 (the payroll gateway) says of its interface runs "don't delete job records
(archive old jobs)": an ``interface_run`` job is the record of which file went where.
The purge therefore writes such a job to ``JOBLEDGER_ARCHIVE_DIR`` before deleting it,
like every job; with no archive configured it keeps them (and says how many in its
result, ``kept_unarchived``) instead of deleting them unrecorded.

A constant, not a setting nor a flag on the task: the purge runs where task modules may
not be imported (the ``jobledger purge`` CLI), and a rule that protects records must not
depend on that.
"""

from __future__ import annotations

#: Deleted by the purge only after being archived; kept while no archive is configured.
ARCHIVE_ONLY_TYPES: frozenset[str] = frozenset({"interface_run"})
