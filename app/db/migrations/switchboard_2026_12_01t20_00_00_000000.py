from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table


class Message(Table, tablename="messages"):
    pass


ID = "2026-12-01T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "settle outbound replies without an outcome through a partial index"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="switchboard", description=DESCRIPTION
    )

    # Recovery looks, on every pass, for replies still queued or sending past the evidence
    # window (app.pipeline.outbox, `settle`): this index holds only those few rows.
    async def create_unsettled_index():
        await Message.raw(
            "CREATE INDEX IF NOT EXISTS messages_unsettled ON messages (status_at) "
            "WHERE direction = 'out' AND status IN ('queued', 'sending')"
        )

    async def drop_unsettled_index():
        await Message.raw("DROP INDEX IF EXISTS messages_unsettled")

    manager.add_raw(create_unsettled_index)
    manager.add_raw_backwards(drop_unsettled_index)

    return manager
