"""The HTTP API and the dashboard (DESIGN §3 "Operators"): ``uvicorn app.api.main:app``.

- :mod:`app.api.main` builds the FastAPI application and turns ledger errors into answers.
- :mod:`app.api.auth` identifies the caller by a tenant-scoped API key.
- :mod:`app.api.jobs` is the JSON API; :mod:`app.api.dashboard` the HTML pages.
- :mod:`app.api.schemas` shapes requests and answers; :mod:`app.api.queries` holds the one
  read :mod:`app.ledger.reports` lacks.

See ``docs/api.md`` for the endpoints, keys and the dashboard.
"""
