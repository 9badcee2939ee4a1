"""Reproducible benchmarks of the ledger's cost; see ``benchmarks/README.md``."""
