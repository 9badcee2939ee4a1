"""The job ledger: the state machine and every write to it, in layers.

- :mod:`app.ledger.rules`: what holds everywhere, pure: the states and their allowed
  predecessors (``PREDECESSORS``, the only statement of the state rules), run names,
  redaction and the sanitising of every stored value; when schedules fire.
- :mod:`app.ledger.engines`: the SQL, one engine per database; the only code that
  knows which database it runs on.
- :mod:`app.ledger.transitions` and :mod:`app.ledger.steps`: one function per transition
  of a job or of a chained job's step; the one door every path goes through.
- :mod:`app.ledger.definitions`: the door of job definitions (named, scheduled jobs):
  every change logged append-only, each firing at most one job.
- :mod:`app.ledger.runtime`: the Celery side: the task base class, the job context,
  chains, the signal handlers, the worker-side request.
- :mod:`app.ledger.operations`: what operators and maintenance do to jobs: cancel,
  retry, the lifeline, the retention purge.
- :mod:`app.ledger.reads`: every read of the ledger (CLI, API, dashboard) and the
  settled status counts.

Where to add things: a transition between existing statuses is an entry of
``PREDECESSORS`` (both engines derive their guards from it); a new kind of write is a
function in ``transitions`` over an ``Engine`` method; an operator command goes in
``operations``; a read goes in ``reads``; a job type is one module in ``tasks/``.

Import the submodule you need (``from app.ledger import transitions``); this package
itself imports nothing so that ``models`` can use the states without loading Celery.
"""
