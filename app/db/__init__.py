"""Database: Piccolo tables, migrations and the connection pool."""

import os

# Piccolo finds its configuration through this variable; point it at ours before any table is used.
os.environ.setdefault("PICCOLO_CONF", "app.db.piccolo_conf")
