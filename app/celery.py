"""The Celery application: ``celery -A app worker|beat|flower`` finds ``app`` here.

Reliability settings, chosen on purpose (what Celery does on a revoke, a killed process
and a redelivery with Redis decides them):

- ``task_acks_late`` + ``task_reject_on_worker_lost``: at-least-once. A message is
  acknowledged after the job's outcome is in the ledger; a pool child killed mid-job puts
  its message back and the job runs again under the same id (the ledger records
  ``running -> retrying -> running``). Job bodies must therefore be idempotent; the
  typed tasks are (keyed upserts, replaced files).
- ``worker_prefetch_multiplier`` (``JOBLEDGER_PREFETCH_MULTIPLIER``, default 4): a few
  messages reserved per process; with acks late a reserved message whose whole worker
  dies is given back by the next lifeline pass (:mod:`app.ledger.operations.lifeline`, about two
  minutes with the defaults), else by Redis after the visibility timeout.
- Job tasks use :class:`app.ledger.runtime.request.JobRequest`: the main process records a pool
  process lost mid-job in the ledger before Celery puts its message back.
- ``visibility_timeout`` (``JOBLEDGER_VISIBILITY_TIMEOUT``, default 3600 s, Redis): must be
  longer than the longest job, or Redis hands a still-running job to a second worker.
- The broker's own settings (``JOBLEDGER_BROKER_URL``: ``redis://``, ``amqp://`` for
  RabbitMQ, or the embedded ``filesystem://``) come from :mod:`app.brokers`: on RabbitMQ
  durable classic queues with ``x-max-priority`` and publisher confirms.
- ``worker_send_task_events`` + ``task_send_sent_event``: Flower sees every task from
  publish to finish without having to switch events on.
- No result backend: the ledger is the record of results.
- ``beat_scheduler``: :class:`app.ledger.runtime.beat.LedgerScheduler`, so ``celery -A app
  beat`` runs the ledger's definitions, one active beat at a time (a lease); run two or
  more for availability.
"""

from __future__ import annotations

from celery import Celery

from app import brokers
from app.config import settings
from app.queues import DEFAULT_PRIORITY, DEFAULT_QUEUE, broker_priority, route_task, task_queues
from app.queues import transport_options as priority_transport_options
from app.schedule import build_schedule

app = Celery("jobledger")
app.conf.update(
    broker_url=settings().broker(),
    broker_transport_options={**brokers.transport_options(), **priority_transport_options()},
    # Every queue this app declares (task_queues, and one a worker is told to consume)
    # carries the broker's arguments: RabbitMQ refuses a queue declared twice with others.
    task_queue_max_priority=brokers.queue_arguments().get("x-max-priority"),
    # On a lost broker connection a running job keeps running: its message goes back to
    # the queue (RabbitMQ) and the ledger fences this execution out if another delivery
    # takes the job over (app/ledger/transitions.py, record_started). Cancelling it here
    # would go through task_revoked and record the job canceled.
    worker_cancel_long_running_tasks_on_connection_loss=False,
    broker_connection_retry_on_startup=True,
    imports=settings().task_modules(),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=settings().prefetch_multiplier,
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_ignore_result=True,
    # a queue per job family (app.queues): a worker without -Q consumes them all
    task_queues=task_queues(),
    task_default_queue=DEFAULT_QUEUE,
    task_routes=(route_task,),
    # a message without a priority is a middling one, not the most urgent (Redis: 0)
    task_default_priority=broker_priority(DEFAULT_PRIORITY),
    result_backend=None,
    task_serializer="json",
    accept_content=["json"],
    enable_utc=True,
    timezone="UTC",
    beat_schedule=build_schedule(),
    # plain `celery -A app beat` reads the ledger's definitions and holds the beat lease
    beat_scheduler="app.ledger.runtime.beat:LedgerScheduler",
)

from app.ledger.runtime import signals as _ledger_signals  # noqa: E402, F401  (connects handlers)
