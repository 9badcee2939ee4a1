"""Duration histograms: log-scale buckets 10 % wide, mergeable by adding counts.

Percentiles of several hours, days or tenants cannot be merged from percentiles alone;
counts per bucket can. Bucket ``i`` (i >= 1) holds durations in [1.1**(i-1), 1.1**i) ms,
bucket 0 those under 1 ms; a percentile is read as the geometric middle of its bucket
(within 5 %). The daily rollups of the purge (:mod:`app.ledger.operations.retention`) and
the hourly trend rollups (:mod:`app.ledger.reads.trends`) both keep these histograms; on
SQLite the same :func:`duration_bucket` is the SQL function ``jobledger_duration_bucket``
(registered by :mod:`app.db`, with ``jobledger_seconds_between``), so a bucket computed in
SQL is the one Python computes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

#: Width of a duration histogram bucket: bucket ``i`` (i >= 1) holds [1.1**(i-1), 1.1**i) ms.
BUCKET_BASE = 1.1


def duration_bucket(seconds: float) -> int:
    """The histogram bucket of a duration: 0 below 1 ms, else ``floor(log_1.1(ms)) + 1``."""
    milliseconds = seconds * 1000
    if milliseconds < 1:
        return 0
    return math.floor(math.log(milliseconds, BUCKET_BASE)) + 1


def bucket_upper_seconds(bucket: int) -> float:
    """The exclusive upper edge of a bucket, in seconds (``1.1**bucket`` ms)."""
    return float(BUCKET_BASE**bucket) / 1000


def bucket_seconds(bucket: int) -> float:
    """The value a bucket stands for: the geometric middle of its range (within 5 %)."""
    if bucket <= 0:
        return 0.0
    return float(BUCKET_BASE ** (bucket - 0.5)) / 1000


def histogram_percentile(histogram: Mapping[str, int], fraction: float) -> float | None:
    """Nearest-rank percentile of a duration histogram (None when it is empty)."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for bucket in sorted(histogram, key=int):
        seen += histogram[bucket]
        if seen >= rank:
            return round(bucket_seconds(int(bucket)), 6)
    return None  # unreachable: seen ends at total >= rank


def merge_histograms(into: dict[str, int], other: Mapping[str, int]) -> dict[str, int]:
    """Add ``other``'s counts to ``into`` (keys as text, as JSON stores them); ``into``."""
    for bucket, count in other.items():
        key = str(bucket)
        into[key] = into.get(key, 0) + int(count)
    return into


def sql_duration_bucket(seconds: float | None) -> int | None:
    """:func:`duration_bucket` as an SQL function (NULL in, NULL out)."""
    return None if seconds is None else duration_bucket(seconds)


def sql_seconds_between(later: str | None, earlier: str | None) -> float | None:
    """``later - earlier`` in seconds of two stamps as SQLite stores them (an SQL function)."""
    if later is None or earlier is None:
        return None
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()
