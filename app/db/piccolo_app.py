"""The Piccolo app holding Switchboard's tables and migrations."""

from __future__ import annotations

import os

from piccolo.conf.apps import AppConfig

from app.db.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="switchboard",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "migrations"),
    table_classes=TABLES,
)
