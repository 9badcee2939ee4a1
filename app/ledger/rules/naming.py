"""Human-readable run names: ``YYYYMMDDhhmmss`` of the job's creation (UTC, database
clock), then ``_1``, ``_2``… for the second, third… job named in the same second.

The counter lives in ``run_name_counters``; the upsert that bumps it is part of the job's
insert transaction, so concurrent producers serialise on one row per second and never
take the same name.
"""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"^\d{14}(_\d+)?$")


def run_name(stamp: str, sequence: int) -> str:
    """The name of the ``sequence``-th job (0-based) created in the second ``stamp``."""
    if len(stamp) != 14 or not stamp.isdigit():
        raise ValueError(f"run name stamp must be 14 digits YYYYMMDDhhmmss, got {stamp!r}")
    if sequence < 0:
        raise ValueError(f"run name sequence must be >= 0, got {sequence}")
    return stamp if sequence == 0 else f"{stamp}_{sequence}"
