"""Messages: store each one once, read the cross-channel history."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.customers import Customers
from storage.inserts import dialect_name, insert_for
from storage.models import Conversation, Delivery, Direction, Message, UTCDateTime, utcnow
from storage.pages import Page, encode_cursor, int_cursor

__all__ = ["HistoryItem", "Messages", "NewMessage"]

# Rows per INSERT: well under SQLite's and asyncpg's bound-parameter limits.
CHUNK = 500


@dataclass(frozen=True)
class NewMessage:
    """A message to store; (channel, account, external_id) makes it idempotent."""

    conversation_id: int
    customer_id: int
    channel: str
    direction: str
    author: str
    text: str = ""
    account: str = ""
    external_id: str | None = None
    attachments: Sequence[dict[str, Any]] = ()
    meta: dict[str, Any] | None = None
    kind: str = "text"
    author_ref: str | None = None
    sent_at: datetime | None = None


@dataclass(frozen=True)
class HistoryItem:
    """One line of the history managers read."""

    id: int
    conversation_id: int
    channel: str
    direction: str
    author: str
    kind: str
    text: str
    attachments: list[dict[str, Any]]
    sent_at: datetime
    delivery_status: str | None
    external_id: str | None


class Messages:
    """Message rows of one session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append(self, new: NewMessage) -> tuple[Message, bool]:
        """Store `new` unless its (channel, account, external_id) is stored; (message, created)."""
        return (await self.append_many([new]))[0]

    async def append_many(self, news: Sequence[NewMessage]) -> list[tuple[Message, bool]]:
        """`append` for a batch, one INSERT per chunk of rows; results in input order."""
        if len(news) == 1 and dialect_name(self.session) == "postgresql":
            return [await self._append_touching(news[0])]
        results: list[tuple[Message, bool]] = []
        for start in range(0, len(news), CHUNK):
            results.extend(await self._append_chunk(news[start : start + CHUNK]))
        await self._touch_conversations([m for m, created in results if created])
        return results

    async def history(
        self, customer_id: int, *, limit: int = 50, cursor: str | None = None
    ) -> Page[HistoryItem]:
        """Every message of the customer on every channel, oldest first.

        Merged-in conversations are included: a merge moves their messages here.
        """
        after = int_cursor(cursor)
        limit = max(1, min(limit, 500))
        customer = await Customers(self.session).get(customer_id)
        conversations = sa.select(col(Conversation.id)).where(
            col(Conversation.customer_id) == customer.id
        )
        stmt = _items().where(col(Message.conversation_id).in_(conversations))
        if after is not None:
            stmt = stmt.where(col(Message.id) > after)
        rows = (await self.session.execute(stmt.order_by(col(Message.id)).limit(limit + 1))).all()
        items = [_item(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_cursor(items[-1].id) if more else None)

    async def last(self, conversation_id: int, n: int) -> list[HistoryItem]:
        """The newest `n` messages of the conversation, oldest first."""
        stmt = (
            _items()
            .where(col(Message.conversation_id) == conversation_id)
            .order_by(col(Message.id).desc())
            .limit(max(0, n))
        )
        rows = (await self.session.execute(stmt)).all()
        return [_item(row) for row in reversed(rows)]

    async def _append_touching(self, new: NewMessage) -> tuple[Message, bool]:
        """PostgreSQL, one message (the usual case): stored and its conversation touched
        by one statement instead of two."""
        row = _row(new, utcnow())
        inserted = (
            await self.session.execute(
                _insert_and_touch(), {f"new_{name}": value for name, value in row.items()}
            )
        ).first()
        if inserted is not None:
            return Message(**inserted._asdict()), True
        return (await self._by_keys({_new_key(new)}))[_new_key(new)], False

    async def _append_chunk(self, news: Sequence[NewMessage]) -> list[tuple[Message, bool]]:
        now = utcnow()
        rows = [_row(new, now) for new in news]
        # Core, not an ORM bulk INSERT: a message is inserted for every one that
        # arrives or leaves, and the ORM's bookkeeping cost more than the INSERT.
        # One message (the usual case) takes the statement built once.
        dialect = dialect_name(self.session)
        if len(rows) == 1:
            result = await self.session.execute(_insert_one(dialect), rows[0])
        else:
            result = await self.session.execute(
                _insert_messages(insert_for(dialect, _MESSAGE).values(rows))
            )
        inserted = [Message(**row._asdict()) for row in result]
        # Ids are handed out in VALUES order, so the inserted rows sorted by id
        # line up with the inputs that were not already stored.
        inserted.sort(key=lambda m: m.id or 0)
        results: list[tuple[Message | None, bool]] = []
        position = 0
        for new in news:
            row = inserted[position] if position < len(inserted) else None
            if row is not None and _key(row) == _new_key(new):
                results.append((row, True))
                position += 1
            else:
                results.append((None, False))
        missing = {_new_key(new) for new, (m, _) in zip(news, results, strict=True) if m is None}
        existing = await self._by_keys(missing)
        return [
            (m, created) if m is not None else (existing[_new_key(new)], False)
            for new, (m, created) in zip(news, results, strict=True)
        ]

    async def _by_keys(self, keys: set[tuple[str, str, str | None]]) -> dict[Any, Message]:
        if not keys:
            return {}
        stmt = sa.select(Message).where(
            sa.tuple_(col(Message.channel), col(Message.account), col(Message.external_id)).in_(
                list(keys)
            )
        )
        rows = await self.session.scalars(stmt.execution_options(populate_existing=True))
        return {_key(m): m for m in rows}

    async def _touch_conversations(self, created: list[Message]) -> None:
        """Move each conversation's last_message_at / channels forward, never back."""
        latest: dict[int, Message] = {}
        latest_in: dict[int, Message] = {}
        for m in created:
            if m.conversation_id not in latest or m.sent_at >= latest[m.conversation_id].sent_at:
                latest[m.conversation_id] = m
            if m.direction == Direction.inbound:
                latest_in[m.conversation_id] = m
        for conversation_id, m in sorted(latest.items()):
            inbound = latest_in.get(conversation_id)
            await self.session.execute(
                _TOUCH if inbound is None else _TOUCH_INBOUND,
                {
                    "touched_id": conversation_id,
                    "at": m.sent_at,
                    "channel": m.channel,
                    "touched_at": utcnow(),
                    "inbound_channel": inbound.channel if inbound is not None else None,
                },
            )


def _insert_messages(stmt: sqlite.Insert | postgresql.Insert) -> Any:
    """The rows not stored yet, each returned whole."""
    return stmt.on_conflict_do_nothing(
        index_elements=["channel", "account", "external_id"]
    ).returning(*_MESSAGE.c)


@functools.cache
def _insert_one(dialect: str) -> Any:
    return _insert_messages(insert_for(dialect, _MESSAGE))


def _touched(when: Any, channel: Any, touched_at: Any, inbound_channel: Any) -> dict[str, Any]:
    """A conversation's columns after a message: its last one moves forward, never back.

    `inbound_channel` None leaves last_inbound_channel as it is.
    """
    table = _CONVERSATION
    newer = sa.or_(table.c.last_message_at.is_(None), table.c.last_message_at <= when)
    values: dict[str, Any] = {
        "last_message_at": sa.case((newer, when), else_=table.c.last_message_at),
        "last_channel": sa.case((newer, channel), else_=table.c.last_channel),
        "updated_at": touched_at,
    }
    if inbound_channel is not None:
        values["last_inbound_channel"] = inbound_channel
    return values


def _touch(*, inbound: bool) -> sa.Update:
    """The touch of a conversation by id, its message's fields bound (built once; see _TOUCH)."""
    table = _CONVERSATION
    values = _touched(
        sa.bindparam("at", type_=UTCDateTime()),
        sa.bindparam("channel"),
        sa.bindparam("touched_at", type_=UTCDateTime()),
        sa.bindparam("inbound_channel") if inbound else None,
    )
    return sa.update(table).where(table.c.id == sa.bindparam("touched_id")).values(values)


@functools.cache
def _insert_and_touch() -> Any:
    """PostgreSQL: a message's INSERT and its conversation's touch in one statement.

    The INSERT is a CTE the touch reads: a message already stored inserts nothing
    and so touches nothing. Returns the inserted row, as `_insert_messages` does.
    Its parameters are new_<column>: a parameter named like a column of the
    conversation (customer_id, created_at) would be SET on it as well.
    """
    values = {
        c.name: sa.bindparam(f"new_{c.name}", type_=c.type) for c in _MESSAGE.c if c.name != "id"
    }
    inserted = _insert_messages(insert_for("postgresql", _MESSAGE).values(values)).cte("inserted")
    table = _CONVERSATION
    inbound = inserted.c.direction == Direction.inbound.value
    touch = (
        sa.update(table)
        .where(table.c.id == inserted.c.conversation_id)
        .values(
            _touched(
                inserted.c.sent_at,
                inserted.c.channel,
                inserted.c.created_at,
                sa.case((inbound, inserted.c.channel), else_=table.c.last_inbound_channel),
            )
        )
    )
    return sa.select(*inserted.c).add_cte(touch.cte("touched"))


_MESSAGE: sa.Table = Message.__table__  # type: ignore[attr-defined]
_CONVERSATION: sa.Table = Conversation.__table__  # type: ignore[attr-defined]
# Every message touches its conversation: the statements are built once, not per message.
_TOUCH = _touch(inbound=False)
_TOUCH_INBOUND = _touch(inbound=True)


def _row(new: NewMessage, now: datetime) -> dict[str, Any]:
    if new.direction not in {d.value for d in Direction}:
        raise ValueError(f"direction must be 'in' or 'out', not {new.direction!r}")
    return {
        "conversation_id": new.conversation_id,
        "customer_id": new.customer_id,
        "channel": new.channel,
        "account": new.account,
        "direction": new.direction,
        "author": new.author,
        "author_ref": new.author_ref,
        "kind": new.kind,
        "external_id": new.external_id,
        "text": new.text,
        "attachments": list(new.attachments),
        "meta": dict(new.meta or {}),
        "sent_at": new.sent_at or now,
        "created_at": now,
    }


def _key(m: Message) -> tuple[str, str, str | None]:
    return (m.channel, m.account, m.external_id)


def _new_key(new: NewMessage) -> tuple[str, str, str | None]:
    return (new.channel, new.account, new.external_id)


def _items() -> sa.Select[Any]:
    status = (
        sa.select(col(Delivery.status))
        # The managers' copies (purpose "desk") say nothing of the customer's delivery.
        .where(col(Delivery.message_id) == col(Message.id), col(Delivery.purpose) != "desk")
        .order_by(col(Delivery.id).desc())
        .limit(1)
        .correlate(Message)
        .scalar_subquery()
    )
    return sa.select(
        col(Message.id),
        col(Message.conversation_id),
        col(Message.channel),
        col(Message.direction),
        col(Message.author),
        col(Message.kind),
        col(Message.text),
        col(Message.attachments),
        col(Message.sent_at),
        status.label("delivery_status"),
        col(Message.external_id),
    )


def _item(row: sa.Row[Any]) -> HistoryItem:
    return HistoryItem(**row._asdict())
