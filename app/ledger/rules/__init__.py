"""The rules of the ledger, pure (no database, no Celery): states and their edges,
run names, redaction, and what every stored value is sanitised to."""
