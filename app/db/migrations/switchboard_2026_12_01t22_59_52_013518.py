from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.table import Table


class ActionExecution(Table, tablename="action_executions"):
    pass


ID = "2026-12-01T22:59:52:013518"
VERSION = "1.38.0"
DESCRIPTION = "HOT updates for the rows every turn writes twice: no status index, room left in their pages"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="switchboard", description=DESCRIPTION
    )

    manager.alter_column(
        table_class_name="ActionExecution",
        tablename="action_executions",
        column_name="status",
        db_column_name="status",
        params={"index": False},
        old_params={"index": True},
        column_class=Varchar,
        old_column_class=Varchar,
        schema=None,
    )

    # A row inserted and then updated by a turn (a message claimed, a webhook execution begun then
    # ended) is updated in place (HOT: no new entry in each of its indexes) only when no indexed
    # column changed and its page has room for the new version. Pages filled to the brim by
    # inserts have none: leave some (new pages only).
    async def leave_room():
        for table in _ROOMY:
            await ActionExecution.raw(f"ALTER TABLE {table} SET (fillfactor = {_FILLFACTOR})")

    async def fill_up():
        for table in _ROOMY:
            await ActionExecution.raw(f"ALTER TABLE {table} RESET (fillfactor)")

    manager.add_raw(leave_room)
    manager.add_raw_backwards(fill_up)

    return manager


_ROOMY = ("messages", "action_executions")
_FILLFACTOR = 80
