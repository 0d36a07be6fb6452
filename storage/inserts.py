"""INSERT … ON CONFLICT, the same way on SQLite and PostgreSQL.

Idempotent writes (a redelivered message, a retried event, two first contacts at
once) lean on the database's unique constraints instead of check-then-insert,
which races between processes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["dialect_name", "insert", "insert_for"]


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def insert(session: AsyncSession, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT for `table` that knows ON CONFLICT on the session's backend."""
    return insert_for(dialect_name(session), table)


def insert_for(dialect: str, table: Any) -> postgresql.Insert | sqlite.Insert:
    """`insert` by the backend's name: for statements built once per backend."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
