"""The ledger's tables as SQLAlchemy Core ``Table`` objects, for statements.

The declarative classes type ``__table__`` as a generic ``FromClause``; these names give
the statement modules (the engines in ``app/ledger/engines/``, the reads, the operations,
the API's sessions, ``tasks/_store.py``) one typed handle each instead of a cast in every
module.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from models.definitions import BeatLease, JobDefinition, JobDefinitionChange
from models.ledger import Job, JobEvent, JobFile, JobLog, JobStep, RunNameCounter
from models.operations import JobOperation
from models.rollups import JobDailyRollup
from models.sessions import DashboardSession
from models.trends import JobHourlyRollup, JobTrendTotal, LedgerCounter, TrendWatermark

jobs = cast(Table, Job.__table__)
steps = cast(Table, JobStep.__table__)
events = cast(Table, JobEvent.__table__)
logs = cast(Table, JobLog.__table__)
files = cast(Table, JobFile.__table__)
counters = cast(Table, RunNameCounter.__table__)
rollups = cast(Table, JobDailyRollup.__table__)
dashboard_sessions = cast(Table, DashboardSession.__table__)
definitions = cast(Table, JobDefinition.__table__)
definition_changes = cast(Table, JobDefinitionChange.__table__)
beat_leases = cast(Table, BeatLease.__table__)
hourly_rollups = cast(Table, JobHourlyRollup.__table__)
trend_totals = cast(Table, JobTrendTotal.__table__)
trend_watermark = cast(Table, TrendWatermark.__table__)
operations = cast(Table, JobOperation.__table__)
ledger_counters = cast(Table, LedgerCounter.__table__)
