"""The ledger's SQL: the statements every transition, read and purge runs."""
