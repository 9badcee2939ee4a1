"""The Celery side of the ledger: the job task base class, what a running job sees, chains
as steps, the signal handlers and the worker-side request.

A message runs a *target*, a job or one step of a chained job, resolved once from its
``jobledger`` header (:mod:`~app.ledger.runtime.target`); every handler calls the same
operations on it, and the pool process keeps one
:class:`~app.ledger.runtime.execution.Execution` of it on the Celery request."""
