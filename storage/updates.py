"""UPDATE of one row by id, built once per set of columns.

The hot path (every message, every send) updates a few columns of one row. Building
that statement costs about as much as running it, so it is built once for each set
of columns and run with parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["update_by_id"]


async def update_by_id(
    session: AsyncSession,
    table: sa.Table,
    row_id: int,
    values: Mapping[str, Any],
    *,
    returning: sa.ColumnElement[Any] | None = None,
    returning_params: Mapping[str, Any] | None = None,
) -> Any:
    """SET `values` on the row of `table` whose id is `row_id` (a Core UPDATE, no flush).

    With `returning`, its value once the row is updated (None when no row has that
    id): whatever the caller would have asked next, in the same round trip. It is
    built once (it keys the statement cache) and may use the bound parameters
    :row_id and `returning_params`. On SQLite its columns are rendered unqualified,
    so it must not refer to the updated row's columns: pass them as parameters.
    """
    result = await session.execute(
        _statement(table, tuple(values), returning),
        {
            "row_id": row_id,
            **{f"new_{name}": value for name, value in values.items()},
            **(returning_params or {}),
        },
    )
    return result.scalar() if returning is not None else None


@functools.cache
def _statement(
    table: sa.Table, columns: tuple[str, ...], returning: sa.ColumnElement[Any] | None
) -> sa.Update:
    # Parameters may not be named like the columns they set: new_<column>.
    statement = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("row_id"))
        .values({name: sa.bindparam(f"new_{name}", type_=table.c[name].type) for name in columns})
    )
    return statement if returning is None else statement.returning(returning)
