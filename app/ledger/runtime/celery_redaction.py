"""What Celery shows of a job — Flower, task events, ``inspect``, worker logs — redacted.

The broker message keeps the real payload (the body needs it, Celery's retries resend
it), but everything Celery derives from it for people to read goes through
:func:`~app.ledger.rules.redaction.redact`, with Celery's own means where it has one:

- **Published arguments**: :func:`payload_reprs` gives ``argsrepr``/``kwargsrepr``, the
  message headers Celery made for this purpose. Celery puts them, instead of the
  arguments, into the ``task-sent`` and ``task-received`` events (so Flower's args and
  kwargs), ``inspect active/reserved`` and its log context. :class:`~app.ledger.runtime.task.
  JobTask` passes them on every publish (``delay``, ``apply_many``, chain steps, retries,
  beat, lifeline), redacting any a caller passed.
- **Events the worker sends**: :class:`RedactingRequest` is the base of the job tasks'
  ``Request`` class (``Task.Request``, Celery's hook for it;
  :class:`app.ledger.runtime.request.JobRequest`). It redacts the ``argsrepr`` of
  messages it did not publish (a producer without jobledger), and the ``result``,
  ``exception`` and ``traceback`` fields of ``task-succeeded``, ``task-failed``,
  ``task-retried`` and ``task-rejected`` before they leave the worker. Celery offers no
  option for those: the result repr is made by ``saferepr`` and the exception by
  ``safe_repr`` inside the worker.
- **Worker logs**: received/succeeded/failed lines carry the result and exception text,
  and tracebacks the exception's message. :func:`redact_log_handlers` wraps the
  formatter of every handler Celery sets up (root, task and multiprocessing loggers;
  ``after_setup_logger``/``after_setup_task_logger`` signals) in a
  :class:`RedactingFormatter`, which redacts the whole formatted record, traceback
  included. A process that configures logging itself (a ``setup_logging`` receiver)
  must wrap its formatters the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from celery import Celery
from celery.utils.log import get_multiprocessing_logger
from celery.utils.saferepr import saferepr
from celery.worker.request import Request

from app.ledger.rules.redaction import redact, redact_data

#: Fields of a worker's task events that carry what the job returned or raised.
EVENT_TEXT_FIELDS = ("result", "exception", "traceback")


def payload_reprs(
    app: Celery, args: Iterable[Any], kwargs: Mapping[str, Any], options: Mapping[str, Any]
) -> dict[str, str]:
    """``argsrepr``/``kwargsrepr`` of a job message: Celery's own reprs (same sizes and
    depth) of the redacted arguments, or the caller's own reprs, redacted."""
    maxlevels = app.conf.task_repr_maxlevels
    given_args, given_kwargs = options.get("argsrepr"), options.get("kwargsrepr")
    return {
        "argsrepr": redact(given_args)
        if isinstance(given_args, str)
        else saferepr(tuple(redact_data(list(args))), app.amqp.argsrepr_maxsize, maxlevels),
        "kwargsrepr": redact(given_kwargs)
        if isinstance(given_kwargs, str)
        else saferepr(redact_data(dict(kwargs)), app.amqp.kwargsrepr_maxsize, maxlevels),
    }


class RedactingRequest(Request):  # type: ignore[misc]
    """A job task's request in the worker: what it shows in events is redacted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A message jobledger published carries redacted reprs already (redacting them
        # again changes nothing); one from elsewhere may not. The request dict travels
        # to the pool child, whose log context reads them too.
        shown = {
            "argsrepr": redact(self.argsrepr or ""),
            "kwargsrepr": redact(self.kwargsrepr or ""),
        }
        self._argsrepr, self._kwargsrepr = shown["argsrepr"], shown["kwargsrepr"]
        self._request_dict.update({key: shown[key] for key in shown if key in self._request_dict})

    def send_event(self, type: str, **fields: Any) -> None:
        if not (self._eventer and self._eventer.enabled and self.task.send_events):
            return
        for name in EVENT_TEXT_FIELDS:
            value = fields.get(name)
            if isinstance(value, str):
                fields[name] = redact(value)
        super().send_event(type, **fields)


class RedactingFormatter(logging.Formatter):
    """Formats a record with the formatter it wraps, then redacts the whole text
    (message, exception text, traceback, stack)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def redact_log_handlers(logger: logging.Logger | None = None, **_: Any) -> None:
    """Wrap the formatter of each handler of ``logger`` (and of the multiprocessing
    logger) in a :class:`RedactingFormatter`; connected to Celery's
    ``after_setup_logger`` and ``after_setup_task_logger`` signals."""
    for each in (logger, get_multiprocessing_logger()):
        for handler in each.handlers if each is not None else ():
            if not isinstance(handler.formatter, RedactingFormatter):
                handler.setFormatter(RedactingFormatter(handler.formatter))
