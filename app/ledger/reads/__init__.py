"""Reading the ledger: the one query module behind the CLI, the API and the dashboard,
and the settled status counts that keep them fast.

A new read is a function here (in :mod:`app.ledger.reads.reports` unless it needs its
own tables): the CLI, the API and the dashboard read jobs through this package only."""
