"""Chained job types whose steps take the paths a plain job takes outside its body: a
step retried by Celery, a step stopped by its hard time limit (the worker's main process
records it), a step revoked before it runs (main process too).

Importing this module (the test modules that use it do, at collection) adds it to
``JOBLEDGER_EXTRA_TASK_MODULES`` so that every worker started afterwards registers these
types, as :mod:`tests.support.ops` does for its own.
"""

from __future__ import annotations

from app.ledger.runtime.chain import Step, chain_job
from tests.support.jobs import PairPayload
from tests.support.processes import register_in_subprocesses

MODULE = "tests.support.chains"


register_in_subprocesses(MODULE)


@chain_job(
    "example.pair_flaky",
    PairPayload,
    steps=[
        Step("example.flaky", lambda p: {"failures": 1}),
        Step("example.echo", lambda p: {"value": p.value}),
    ],
)
def pair_flaky() -> None:
    """A first step that fails once and is retried by Celery, then an echo."""


@chain_job(
    "example.pair_stubborn",
    PairPayload,
    steps=[
        Step("example.stubborn", lambda p: {"gate": p.gate}),
        Step("example.echo", lambda p: {"value": p.value}),
    ],
)
def pair_stubborn() -> None:
    """A first step that only its hard time limit stops (3 s in the test session), then
    a step that never runs."""
