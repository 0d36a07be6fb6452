"""Mail threads in the store: which conversation a mail belongs to, and its parents.

Outgoing: the conversation of a delivery (for its reply token) and the
Message-IDs it answers (In-Reply-To: the customer's latest mail, References:
the conversation's mail so far), so the customer's client threads it.

Incoming: the conversation an In-Reply-To/References names through a
Message-ID we sent — but only for a sender that is that delivery's recipient
(or another of the same customer's email identities). Message-IDs travel in
every quoted reply and forward, so a stranger can copy one; it proves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col

from storage.db import Database
from storage.models import Delivery, Direction, Identity, Message

__all__ = ["MailThreads", "OutgoingThread"]

_MAX_PARENTS = 20
_MAX_IDS = 50


@dataclass(frozen=True, slots=True)
class OutgoingThread:
    """Where an outgoing mail belongs: its conversation and the mail it follows."""

    conversation_id: int
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    subject: str | None = None  # "Re: " the customer's latest mail, for an answer without one


class MailThreads:
    """Thread lookups for one mailbox (`account`), each its own short read."""

    def __init__(self, db: Database, account: str) -> None:
        self.db = db
        self.account = account.lower()

    async def outgoing(self, delivery_id: int) -> OutgoingThread | None:
        """The thread of a stored delivery, or None if it is not in the store."""
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(col(Message.conversation_id), col(Message.id))
                    .join(Delivery, col(Delivery.message_id) == col(Message.id))
                    .where(col(Delivery.id) == delivery_id)
                )
            ).first()
            if row is None:
                return None
            conversation_id, message_id = int(row[0]), int(row[1] or 0)
            theirs = sa.select(
                col(Message.id), col(Message.external_id), sa.literal(1).label("in_")
            ).where(
                col(Message.conversation_id) == conversation_id,
                col(Message.channel) == "email",
                col(Message.direction) == Direction.inbound,
                col(Message.external_id).is_not(None),
                col(Message.id) < message_id,
            )
            ours = (
                sa.select(col(Message.id), col(Delivery.external_id), sa.literal(0).label("in_"))
                .join(Delivery, col(Delivery.message_id) == col(Message.id))
                .where(
                    col(Message.conversation_id) == conversation_id,
                    col(Delivery.channel) == "email",
                    col(Delivery.external_id).is_not(None),
                    col(Message.id) < message_id,
                )
            )
            union = sa.union_all(theirs, ours).subquery()
            parents = (
                await conn.execute(
                    sa.select(union.c.id, union.c.external_id, union.c.in_)
                    .order_by(union.c.id.desc())
                    .limit(_MAX_PARENTS)
                )
            ).all()
            their_meta = await conn.scalar(
                sa.select(col(Message.meta))
                .where(
                    col(Message.conversation_id) == conversation_id,
                    col(Message.channel) == "email",
                    col(Message.direction) == Direction.inbound,
                    col(Message.id) < message_id,
                )
                .order_by(col(Message.id).desc())
                .limit(1)
            )
        chain = [str(p[1]) for p in reversed(parents) if str(p[1]).startswith("<")]
        latest_theirs = next((str(p[1]) for p in parents if p[2] == 1), None)
        return OutgoingThread(
            conversation_id=conversation_id,
            in_reply_to=latest_theirs or (chain[-1] if chain else None),
            references=tuple(dict.fromkeys(chain)),
            subject=_reply_subject(their_meta),
        )

    async def replied_conversation(self, message_ids: Sequence[str], sender: str) -> int | None:
        """The conversation of the mail we sent that `message_ids` name, if `sender` got it."""
        ids = [m for m in dict.fromkeys(message_ids) if m][:_MAX_IDS]
        if not ids:
            return None
        sender = sender.lower()
        async with self.db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        col(Message.conversation_id),
                        col(Delivery.address),
                        col(Delivery.customer_id),
                    )
                    .join(Message, col(Message.id) == col(Delivery.message_id))
                    .where(
                        col(Delivery.channel) == "email",
                        col(Delivery.external_id).in_(ids),
                    )
                    .order_by(col(Delivery.id).desc())
                )
            ).all()
            if not rows:
                return None
            for conversation_id, address, _customer in rows:
                if str(address).lower() == sender:
                    return int(conversation_id)
            # Another of the same customer's proven addresses may answer too.
            owner = await conn.scalar(
                sa.select(col(Identity.customer_id)).where(
                    col(Identity.channel) == "email",
                    col(Identity.account) == self.account,
                    col(Identity.address) == sender,
                )
            )
        for conversation_id, _address, customer_id in rows:
            if owner is not None and owner == customer_id:
                return int(conversation_id)
        return None


def _reply_subject(meta: object) -> str | None:
    subject = meta.get("subject") if isinstance(meta, dict) else None
    if not isinstance(subject, str) or not subject.strip():
        return None
    subject = " ".join(subject.split())
    return subject if subject[:3].lower() == "re:" else f"Re: {subject}"
