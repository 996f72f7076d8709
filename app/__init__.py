"""Switchboard: the running service (the version lives here; pyproject.toml reads it)."""

__version__ = "0.1.0"
