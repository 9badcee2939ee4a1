"""Reading the ledger: the one query module behind the CLI, the API and the dashboard,
and the settled status counts that keep them fast."""
