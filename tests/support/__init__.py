"""Test support: example job types, worker processes, ledger queries."""
