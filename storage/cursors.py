"""Named read positions of pollers (VK Long Poll's ts), kept across restarts."""

from __future__ import annotations

from storage.db import Database
from storage.inserts import insert
from storage.models import Cursor, utcnow

__all__ = ["Cursors"]


class Cursors:
    """Load and save one value per name; each call is its own short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, name: str) -> str | None:
        async with self.db.session() as session:
            cursor = await session.get(Cursor, name)
            return None if cursor is None else cursor.value

    async def save(self, name: str, value: str) -> None:
        now = utcnow()
        async with self.db.session() as session:
            statement = insert(session, Cursor).values(name=name, value=value, updated_at=now)
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["name"], set_={"value": value, "updated_at": now}
                )
            )
