from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.column_types import UUID
from piccolo.table import Table


class Message(Table, tablename="messages"):
    pass

ID = "2026-11-23T07:08:44:350281"
VERSION = "1.38.0"
DESCRIPTION = "claim unprocessed messages through a partial index"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="switchboard", description=DESCRIPTION
    )

    manager.alter_column(
        table_class_name="Message",
        tablename="messages",
        column_name="run_id",
        db_column_name="run_id",
        params={"index": False},
        old_params={"index": True},
        column_class=UUID,
        old_column_class=UUID,
        schema=None,
    )

    manager.alter_column(
        table_class_name="Message",
        tablename="messages",
        column_name="processed_at",
        db_column_name="processed_at",
        params={"index": False},
        old_params={"index": True},
        column_class=Timestamptz,
        old_column_class=Timestamptz,
        schema=None,
    )

    # Each turn claims its conversation's unprocessed inbound messages, and recovery looks for
    # conversations that have some: both read this small index instead of combining the
    # conversation index with one holding every unprocessed row.
    async def create_unprocessed_index():
        await Message.raw(
            "CREATE INDEX IF NOT EXISTS messages_unprocessed ON messages (conversation, seq) "
            "WHERE direction = 'in' AND processed_at IS NULL"
        )

    async def drop_unprocessed_index():
        await Message.raw("DROP INDEX IF EXISTS messages_unprocessed")

    manager.add_raw(create_unprocessed_index)
    manager.add_raw_backwards(drop_unprocessed_index)

    return manager
