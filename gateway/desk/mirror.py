"""The mirror: every message of a desk conversation, copied into its managers' topic.

Hooked into the router (inbound, inside the transaction that stores it) and the
outbox (outbound, inside the transaction that stages it), so a copy is stored
with its original or not at all, and goes out through the group's lane in the
order it was stored. The copy names the conversation, not a topic: the topic is
found (or created, or re-created after a deletion) when it is sent, by
bots/telegram/managers/adapter.py.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway.clock import Clock
from gateway.desk.cards import card_html, message_line
from gateway.outbox import Enqueued, Outbox, Target
from gateway.router import Arrival
from storage.conversations import Conversations
from storage.models import Conversation, ConversationMode, Customer, Message

__all__ = ["DESK_ORIGIN", "Mirror"]

log = logging.getLogger("chatgate.desk")

# meta["desk_origin"] of a message a manager wrote in the topic: it is there already.
DESK_ORIGIN = "desk_origin"
_NEEDS_PERSON = (ConversationMode.waiting, ConversationMode.manager)


class Mirror:
    """Copies a desk conversation's messages into the managers' group, through the outbox."""

    def __init__(
        self, outbox: Outbox, *, chat_id: int, account: str, clock: Clock, history: int = 10
    ) -> None:
        self.outbox = outbox
        self.chat_id = chat_id
        self.account = account
        self.clock = clock
        self.history = history

    async def inbound(self, session: AsyncSession, arrival: Arrival) -> list[Enqueued]:
        """Router hook: copy a stored customer message, if its conversation is the desk's."""
        conversation = await session.get(Conversation, arrival.conversation_id)
        message = await session.get(Message, arrival.message_id)
        if conversation is None or message is None:
            return []
        ids = await self._mirror(session, conversation, message)
        return [Enqueued(message.id or 0, (), 0.0, tuple(ids))] if ids else []

    async def outbound(self, session: AsyncSession, message: Message, target: Target) -> list[int]:
        """Outbox hook: copy a staged bot, flow, system or manager message."""
        if message.meta.get(DESK_ORIGIN) == "topic":
            return []  # a manager wrote it in the topic: everyone saw it there
        conversation = await session.get(Conversation, target.conversation_id)
        if conversation is None:
            return []
        return await self._mirror(session, conversation, message)

    async def open(self, session: AsyncSession, conversation: Conversation) -> list[int]:
        """Put the conversation on the desk now (the API's assign, a manager's take)."""
        assert conversation.id is not None
        if not await Conversations(session).open_desk(conversation.id, self.clock.now()):
            return []
        return [await self._card(session, conversation)]

    async def notice(
        self,
        session: AsyncSession,
        conversation: Conversation,
        html: str,
        *,
        retitle: bool = False,
    ) -> int:
        """A line for the managers only (a command's answer, a reminder), in the topic.

        Stored as a copy attached to the conversation's latest message: it is not
        part of the customer's dialogue, but like everything sent, it is stored first.
        """
        assert conversation.id is not None
        latest = await session.scalar(
            sa.select(sa.func.max(col(Message.id))).where(
                col(Message.conversation_id) == conversation.id
            )
        )
        if latest is None:
            raise LookupError(f"conversation {conversation.id} has no messages yet")
        return await self._copy(session, conversation, int(latest), html, retitle=retitle)

    async def _mirror(
        self, session: AsyncSession, conversation: Conversation, message: Message
    ) -> list[int]:
        assert conversation.id is not None
        if conversation.desk_opened_at is None:
            if conversation.mode not in _NEEDS_PERSON:
                return []
            opened = await self.open(session, conversation)
            if opened:
                return opened  # the card's history ends with this message
        customer = await session.get(Customer, conversation.customer_id)
        name = (customer.name if customer is not None else None) or "клиент"
        assert message.id is not None
        return [await self._copy(session, conversation, message.id, message_line(message, name))]

    async def _card(self, session: AsyncSession, conversation: Conversation) -> int:
        card = await card_html(session, conversation, history=self.history)
        latest = await session.scalar(
            sa.select(sa.func.max(col(Message.id))).where(
                col(Message.conversation_id) == conversation.id
            )
        )
        if latest is None:
            raise LookupError(f"conversation {conversation.id} has no messages yet")
        log.info("desk.opened", extra={"conversation": conversation.id})
        return await self._copy(session, conversation, int(latest), card.html)

    async def _copy(
        self,
        session: AsyncSession,
        conversation: Conversation,
        message_id: int,
        html: str,
        *,
        retitle: bool = False,
    ) -> int:
        assert conversation.id is not None
        return await self.outbox.stage_copy(
            session,
            message_id=message_id,
            customer_id=conversation.customer_id,
            channel="telegram",
            account=self.account,
            address=str(self.chat_id),
            payload={
                "text": html,
                "html": html,
                "inline": True,
                # retitle: the topic's name is brought up to date before this is sent.
                "meta": {"desk": {"conversation": conversation.id, "retitle": retitle}},
            },
        )
