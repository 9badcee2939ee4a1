"""Where a source may be: the folders file sources are read from, the networks URL
sources may reach, and the error that refuses the rest.

Usage::

    path = confined_path("var/data/bank.csv")          # or SourceRefused
"""

from __future__ import annotations


class SourceRefused(ValueError):
    """A source the configuration does not allow; ``str()`` is a user-safe reason that
    says which setting decides."""
