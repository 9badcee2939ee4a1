"""A real Celery worker of ``app`` with extra broker transport options, for fault tests.

Usage::

    JOBLEDGER_TEST_TRANSPORT_OPTIONS='{"visibility_timeout": 5}' \\
        python -m tests.support.fault_worker worker -P prefork -c 1 -Q q …

The JSON object is merged into ``broker_transport_options`` before the worker starts:
the application has no setting for a visibility timeout under 60 s nor for kombu's
restore sweep, which a redelivery test needs to see a redelivery in seconds.
``JOBLEDGER_TEST_CELERY_CONF`` (a JSON object) is merged into the Celery settings the same
way. A module of
its own (not ``tests.support.faults`` run as ``__main__``) so that the tasks it registers
are defined once.
"""

from __future__ import annotations

import json
import os
import sys

from app.celery import app


def main() -> None:
    options = json.loads(os.environ.get("JOBLEDGER_TEST_TRANSPORT_OPTIONS") or "{}")
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, **options}
    # Celery settings too (the multi-host test's short AMQP ``broker_heartbeat``)
    app.conf.update(json.loads(os.environ.get("JOBLEDGER_TEST_CELERY_CONF") or "{}"))
    app.worker_main(sys.argv[1:])


if __name__ == "__main__":
    main()
