"""The Celery side of the ledger: the job task base class, what a running job sees, chains
as steps, the signal handlers and the worker-side request."""
