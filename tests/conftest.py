"""Shared fixtures: ``smoke_run``, the six notebooks executed once per session (see smoke_notebooks.py)."""
from smoke_notebooks import smoke_run  # noqa: F401  (a session fixture)
