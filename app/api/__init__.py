"""The HTTP API and the dashboard, for operators: ``uvicorn app.api.main:app``.

- :mod:`app.api.main` builds the FastAPI application and turns ledger errors into answers.
- :mod:`app.api.auth` identifies the caller by a tenant-scoped API key.
- :mod:`app.api.jobs` is the JSON API; :mod:`app.api.dashboard` the HTML pages.
- :mod:`app.api.schemas` shapes requests and answers. Every read goes through
  :mod:`app.ledger.reads.reports`, every change through the tasks and
  :mod:`app.ledger.operations.actions`.

See ``docs/api.md`` for the endpoints, keys and the dashboard.
"""
