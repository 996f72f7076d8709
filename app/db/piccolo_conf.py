"""Piccolo's configuration: the engine, from DATABASE_URL, and the app registry."""

from __future__ import annotations

import os

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine

# The URL is resolved (environment, local port or embedded server) before this module is
# first imported: see app.services.embedded.resolve_services().
DB = PostgresEngine(
    config={"dsn": os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/switchboard"},
    log_queries=False,
)

APP_REGISTRY = AppRegistry(apps=["app.db.piccolo_app"])
