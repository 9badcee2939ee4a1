"""SQLAlchemy 2.x declarative tables, nothing else. The schema itself is made by
``migrations/`` (Alembic); these classes describe it for queries and for the test that
checks ``upgrade head`` equals the models."""

from models.base import Base
from models.counts import JobStatusCount, JobStatusTotal, StatusCountsWatermark
from models.definitions import BeatLease, JobDefinition, JobDefinitionChange
from models.domain import Dataset, DatasetRow, Suggestion, SyncCursor, Transaction  # noqa: F401
from models.ledger import Job, JobEvent, JobFile, JobLog, JobStep, RunNameCounter
from models.operations import JobOperation
from models.rollups import JobDailyRollup
from models.sessions import DashboardSession
from models.trends import JobHourlyRollup, JobTrendTotal, LedgerCounter, TrendWatermark

__all__ = [
    "Base",
    "BeatLease",
    "DashboardSession",
    "Job",
    "JobDailyRollup",
    "JobDefinition",
    "JobDefinitionChange",
    "JobEvent",
    "JobFile",
    "JobHourlyRollup",
    "JobLog",
    "JobOperation",
    "JobStatusCount",
    "JobStatusTotal",
    "JobStep",
    "JobTrendTotal",
    "LedgerCounter",
    "RunNameCounter",
    "StatusCountsWatermark",
    "TrendWatermark",
]
