"""Merges: make two customers one, reversibly.

The `Merge` row records exactly what moved (ids and the values they replaced), so
`unmerge` puts both customers back. Messages that reached the survivor after the
merge stay with the survivor. Consent never grows by merging: a withdrawal on
either side wins, and a withdrawal for every channel ("*") overrides grants for
single channels of the same purpose.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from storage.conversations import Conversations, lock_customers
from storage.errors import Conflict, NotFound
from storage.inserts import insert
from storage.models import (
    Consent,
    Conversation,
    ConversationMode,
    Customer,
    CustomerTag,
    Delivery,
    Direction,
    Event,
    Identity,
    Merge,
    Message,
    utcnow,
)

__all__ = ["Merges"]

UNIQUE_FIELDS = ("external_id", "phone", "email")
FILLED_FIELDS = ("name", *UNIQUE_FIELDS, "timezone", "locale")
MOVED_ROWS: dict[str, type[SQLModel]] = {
    "identities": Identity,
    "events": Event,
    "deliveries": Delivery,
}
BATCH = 1000


class Merges:
    """Merge rows of one session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, merge_id: int) -> Merge:
        merge = await self.session.get(Merge, merge_id, populate_existing=True)
        if merge is None:
            raise NotFound("merge", merge_id)
        return merge

    async def merge(self, survivor_id: int, absorbed_id: int, *, actor: str | None = None) -> Merge:
        """Move everything of `absorbed_id` to `survivor_id`; the record to undo it."""
        if survivor_id == absorbed_id:
            raise Conflict("absorbed_id", "a customer cannot be merged with itself")
        await lock_customers(self.session, [survivor_id, absorbed_id])
        survivor = await self._customer(survivor_id)
        absorbed = await self._customer(absorbed_id)
        for field, customer in (("survivor_id", survivor), ("absorbed_id", absorbed)):
            if customer.merged_into_id is not None:
                raise Conflict(
                    field,
                    f"customer {customer.id} is already merged into {customer.merged_into_id}",
                )
        moved: dict[str, Any] = {}
        moved["conversations"], moved["target_conversation_id"] = await self._move_messages(
            survivor, absorbed
        )
        for name, model in MOVED_ROWS.items():
            moved[name] = await self._ids(model, absorbed_id)
            await _reassign(self.session, model, moved[name], customer_id=survivor_id)
        moved["tags"] = await self._merge_tags(survivor_id, absorbed_id)
        moved["consents"] = await self._merge_consents(survivor_id, absorbed_id)
        added = {k: v for k, v in absorbed.attributes.items() if k not in survivor.attributes}
        survivor.attributes = {**survivor.attributes, **added}
        moved["attributes_added"] = added
        moved["filled"] = await self._fill(survivor, absorbed)
        now = utcnow()
        absorbed.merged_into_id = survivor_id
        absorbed.updated_at = survivor.updated_at = now
        merge = Merge(
            survivor_id=survivor_id,
            absorbed_id=absorbed_id,
            moved=moved,
            actor=actor,
            created_at=now,
        )
        self.session.add(merge)
        await self.session.flush()
        return merge

    async def unmerge(self, merge_id: int) -> None:
        """Put both customers back as they were before merge `merge_id`."""
        merge = await self.get(merge_id)
        if merge.undone_at is not None:
            raise Conflict("merge_id", f"merge {merge_id} is already undone")
        if merge.moved.get("erased"):
            raise Conflict("merge_id", f"merge {merge_id} involves an erased customer")
        await lock_customers(self.session, [merge.survivor_id, merge.absorbed_id])
        survivor = await self._customer(merge.survivor_id)
        absorbed = await self._customer(merge.absorbed_id)
        if survivor.merged_into_id is not None:
            raise Conflict(
                "merge_id",
                f"customer {survivor.id} was merged into {survivor.merged_into_id} since; "
                "undo that merge first",
            )
        moved = merge.moved
        await self._unfill(survivor, absorbed, moved["filled"])
        for key, value in moved["attributes_added"].items():
            if survivor.attributes.get(key) == value:
                survivor.attributes = {k: v for k, v in survivor.attributes.items() if k != key}
        await self._unmerge_tags(survivor.id, absorbed.id, moved["tags"])
        await self._unmerge_consents(survivor.id, absorbed.id, moved["consents"])
        for name, model in MOVED_ROWS.items():
            await _reassign(self.session, model, moved[name], customer_id=absorbed.id)
        await self._restore_messages(merge.absorbed_id, moved)
        now = utcnow()
        absorbed.merged_into_id = None
        absorbed.updated_at = survivor.updated_at = now
        merge.undone_at = now
        await self.session.flush()

    async def _customer(self, customer_id: int) -> Customer:
        customer = await self.session.get(Customer, customer_id, populate_existing=True)
        if customer is None:
            raise NotFound("customer", customer_id)
        return customer

    async def _ids(self, model: Any, customer_id: int) -> list[int]:
        rows = await self.session.scalars(
            sa.select(model.id).where(model.customer_id == customer_id).order_by(model.id)
        )
        return list(rows)

    async def _move_messages(
        self, survivor: Customer, absorbed: Customer
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Absorbed conversations' messages into the survivor's one conversation."""
        absorbed_conversations = list(
            await self.session.scalars(
                sa.select(Conversation)
                .where(
                    col(Conversation.customer_id) == absorbed.id,
                    col(Conversation.merged_into_id).is_(None),
                )
                .order_by(col(Conversation.id))
                .execution_options(populate_existing=True)
            )
        )
        if not absorbed_conversations:
            return [], None
        assert survivor.id is not None
        target = await Conversations(self.session).open_for(survivor.id)
        assert target.id is not None
        records = []
        for conversation in absorbed_conversations:
            message_ids = await self._message_ids(conversation.id)
            await _reassign(
                self.session,
                Message,
                message_ids,
                conversation_id=target.id,
                customer_id=survivor.id,
            )
            record: dict[str, Any] = {
                "id": conversation.id,
                "mode": conversation.mode,
                "messages": message_ids,
                "dialog_state": None,
            }
            if not target.dialog_state and conversation.dialog_state:
                record["dialog_state"] = conversation.dialog_state
                target.dialog_state = dict(conversation.dialog_state)
            conversation.mode = ConversationMode.merged
            conversation.merged_into_id = target.id
            conversation.updated_at = utcnow()
            records.append(record)
        await self.session.flush()
        await _recount(self.session, target.id)
        return records, target.id

    async def _message_ids(self, conversation_id: int | None) -> list[int]:
        rows = await self.session.scalars(
            sa.select(col(Message.id))
            .where(col(Message.conversation_id) == conversation_id)
            .order_by(col(Message.id))
        )
        return [int(i) for i in rows if i is not None]

    async def _restore_messages(self, absorbed_id: int, moved: dict[str, Any]) -> None:
        target_id = moved["target_conversation_id"]
        for record in moved["conversations"]:
            await _reassign(
                self.session,
                Message,
                record["messages"],
                conversation_id=record["id"],
                customer_id=absorbed_id,
            )
            conversation = await self.session.get(
                Conversation, record["id"], populate_existing=True
            )
            assert conversation is not None
            conversation.mode = record["mode"]
            conversation.merged_into_id = None
            conversation.updated_at = utcnow()
            await self.session.flush()
            await _recount(self.session, record["id"])
        if target_id is not None:
            target = await self.session.get(Conversation, target_id, populate_existing=True)
            assert target is not None
            given = [r["dialog_state"] for r in moved["conversations"] if r["dialog_state"]]
            if given and target.dialog_state == given[0]:
                target.dialog_state = {}
            await self.session.flush()
            await _recount(self.session, target_id)

    async def _merge_tags(self, survivor_id: int, absorbed_id: int) -> dict[str, list[str]]:
        absorbed = set(await self._tags(absorbed_id))
        added = sorted(absorbed - set(await self._tags(survivor_id)))
        await self.session.execute(
            sa.delete(CustomerTag).where(col(CustomerTag.customer_id) == absorbed_id)
        )
        await self._add_tags(survivor_id, added)
        return {"absorbed": sorted(absorbed), "added": added}

    async def _unmerge_tags(self, survivor_id: Any, absorbed_id: Any, tags: dict[str, Any]) -> None:
        if tags["added"]:
            await self.session.execute(
                sa.delete(CustomerTag).where(
                    col(CustomerTag.customer_id) == survivor_id,
                    col(CustomerTag.tag).in_(tags["added"]),
                )
            )
        await self._add_tags(absorbed_id, tags["absorbed"])

    async def _tags(self, customer_id: int) -> list[str]:
        rows = await self.session.scalars(
            sa.select(col(CustomerTag.tag)).where(col(CustomerTag.customer_id) == customer_id)
        )
        return list(rows)

    async def _add_tags(self, customer_id: int, tags: Iterable[str]) -> None:
        rows = [{"customer_id": customer_id, "tag": t} for t in tags]
        if rows:
            stmt = insert(self.session, CustomerTag).values(rows).on_conflict_do_nothing()
            await self.session.execute(stmt)

    async def _merge_consents(self, survivor_id: int, absorbed_id: int) -> dict[str, Any]:
        before = await self._consents(survivor_id)
        absorbed = await self._consents(absorbed_id)
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for row in [*before, *absorbed]:
            key = (row["channel"], row["purpose"])
            if key not in merged or (merged[key]["granted"] and not row["granted"]):
                merged[key] = dict(row)
        withdrawn_everywhere = {
            purpose
            for (channel, purpose), row in merged.items()
            if channel == "*" and not row["granted"]
        }
        stamp = utcnow().isoformat()
        for (_, purpose), row in merged.items():
            if purpose in withdrawn_everywhere and row["granted"]:
                row.update(granted=False, source="merge")
            row["updated_at"] = stamp  # marks the rows this merge wrote
        await self._replace_consents(survivor_id, list(merged.values()))
        await self._replace_consents(absorbed_id, [])
        return {"survivor": before, "absorbed": absorbed, "merged": list(merged.values())}

    async def _unmerge_consents(
        self, survivor_id: Any, absorbed_id: Any, consents: dict[str, Any]
    ) -> None:
        merged = {(r["channel"], r["purpose"]): r for r in consents["merged"]}
        restored: dict[tuple[str, str], dict[str, Any]] = {}
        for row in await self._consents(survivor_id):
            key = (row["channel"], row["purpose"])
            written = merged.get(key)
            if written is None or _instant(written) != _instant(row):
                restored[key] = row  # changed since the merge: the customer's latest word
        for row in consents["survivor"]:
            restored.setdefault((row["channel"], row["purpose"]), row)
        await self._replace_consents(survivor_id, list(restored.values()))
        await self._replace_consents(absorbed_id, consents["absorbed"])

    async def _consents(self, customer_id: int) -> list[dict[str, Any]]:
        rows = await self.session.scalars(
            sa.select(Consent)
            .where(col(Consent.customer_id) == customer_id)
            .order_by(col(Consent.channel), col(Consent.purpose))
            .execution_options(populate_existing=True)
        )
        return [
            {
                "channel": c.channel,
                "purpose": c.purpose,
                "granted": c.granted,
                "source": c.source,
                "updated_at": c.updated_at.isoformat(),
            }
            for c in rows
        ]

    async def _replace_consents(self, customer_id: Any, rows: list[dict[str, Any]]) -> None:
        await self.session.execute(
            sa.delete(Consent).where(col(Consent.customer_id) == customer_id)
        )
        values = [
            {
                "customer_id": customer_id,
                "channel": r["channel"],
                "purpose": r["purpose"],
                "granted": r["granted"],
                "source": r["source"],
                "updated_at": datetime.fromisoformat(r["updated_at"]),
            }
            for r in rows
        ]
        if values:
            await self.session.execute(insert(self.session, Consent).values(values))

    async def _fill(self, survivor: Customer, absorbed: Customer) -> dict[str, Any]:
        """Survivor's empty profile fields from the absorbed; unique ones move."""
        filled = {
            f: getattr(absorbed, f)
            for f in FILLED_FIELDS
            if getattr(survivor, f) is None and getattr(absorbed, f) is not None
        }
        for field in filled:
            if field in UNIQUE_FIELDS:
                setattr(absorbed, field, None)
        await self.session.flush()  # free the unique values before the survivor takes them
        for field, value in filled.items():
            setattr(survivor, field, value)
        await self.session.flush()
        return filled

    async def _unfill(self, survivor: Customer, absorbed: Customer, filled: dict[str, Any]) -> None:
        for field, value in filled.items():
            if getattr(survivor, field) == value:
                setattr(survivor, field, None)
        await self.session.flush()
        for field, value in filled.items():
            if field in UNIQUE_FIELDS and await self._held(field, value):
                continue  # someone took it since; the absorbed does without
            setattr(absorbed, field, value)
        await self.session.flush()

    async def _held(self, field: str, value: Any) -> bool:
        found = await self.session.scalar(
            sa.select(col(Customer.id)).where(getattr(Customer, field) == value)
        )
        return found is not None


async def _reassign(session: AsyncSession, model: Any, ids: list[int], **values: Any) -> None:
    for start in range(0, len(ids), BATCH):
        await session.execute(
            sa.update(model)
            .where(model.id.in_(ids[start : start + BATCH]))
            .values(**values)
            .execution_options(synchronize_session=False)
        )


async def _recount(session: AsyncSession, conversation_id: int) -> None:
    """The conversation's last message time and channels, from its messages."""
    latest = (
        await session.execute(
            sa.select(col(Message.sent_at), col(Message.channel))
            .where(col(Message.conversation_id) == conversation_id)
            .order_by(col(Message.sent_at).desc(), col(Message.id).desc())
            .limit(1)
        )
    ).first()
    inbound = await session.scalar(
        sa.select(col(Message.channel))
        .where(
            col(Message.conversation_id) == conversation_id,
            col(Message.direction) == Direction.inbound,
        )
        .order_by(col(Message.sent_at).desc(), col(Message.id).desc())
        .limit(1)
    )
    await session.execute(
        sa.update(Conversation)
        .where(col(Conversation.id) == conversation_id)
        .values(
            last_message_at=latest[0] if latest else None,
            last_channel=latest[1] if latest else None,
            last_inbound_channel=inbound,
        )
        .execution_options(synchronize_session=False)
    )


def _instant(row: dict[str, Any]) -> tuple[bool, datetime]:
    return row["granted"], datetime.fromisoformat(row["updated_at"])
