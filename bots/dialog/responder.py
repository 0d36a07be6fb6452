"""The bot's side of a conversation: run the dialog, keep its state, queue its replies.

The router calls this for a message that arrived while the conversation is the
bot's, inside the transaction that stores the message: the message, the dialog's
state, the hand-off and the replies commit together or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bots.dialog.engine import Action, Dialog, OutMessage, Turn
from gateway.channels import Button
from gateway.clock import Clock
from gateway.linking import CodeOffer
from gateway.outbox import Enqueued, Target
from gateway.router import Arrival
from storage.addresses import normalize_phone
from storage.conversations import Conversations
from storage.db import Database
from storage.errors import InvalidAddress
from storage.models import Author, Conversation, ConversationMode, Customer, Event

__all__ = ["BUTTON_CHANNELS", "BotResponder", "ReplyQueue"]

log = logging.getLogger("chatgate.bot")

BUTTON_CHANNELS = frozenset({"telegram", "vk"})
# A typed phone or email is a claim: proven by a code sent there (channel, the action's field).
CLAIMS = {"phone_captured": ("sms", "phone"), "email_captured": ("email", "email")}
ORDER_EVENTS = ("order_status", "order_updated", "order_placed", "order_shipped", "purchase")


class ReplyQueue(Protocol):
    """The outbox's two-step enqueue: rows in our transaction, queued after commit."""

    async def stage(
        self,
        session: AsyncSession,
        target: Target,
        *,
        text: str = "",
        buttons: Sequence[Sequence[Button]] = (),
        inline: bool = True,
        author: str = ...,
    ) -> Enqueued: ...

    async def release(self, *batches: Enqueued) -> None: ...


class CodeOffers(Protocol):
    """Proof by one-time code for a typed phone (gateway.linking.Linker)."""

    async def offer_code(
        self, session: AsyncSession, target: Target, *, channel: str, address: str
    ) -> CodeOffer | None: ...


class BotResponder:
    """Answers in bot mode, inside the transaction that stored the customer's message."""

    def __init__(
        self,
        db: Database,
        replies: ReplyQueue,
        dialog: Dialog,
        *,
        clock: Clock,
        region: str = "RU",
        context: Mapping[str, str] | None = None,
        codes: CodeOffers | None = None,
    ) -> None:
        self.db = db
        self.replies = replies
        self.dialog = dialog
        self.clock = clock
        self.region = region
        self.context = dict(context or {})
        self.codes = codes

    async def release(self, *staged: Enqueued) -> None:
        await self.replies.release(*staged)

    async def answer(
        self,
        session: AsyncSession,
        arrival: Arrival,
        conversation: Conversation,
        customer: Customer,
    ) -> list[Enqueued]:
        """Run the dialog for a stored message and stage its replies in `session`."""
        inbound = arrival.inbound
        has_buttons = inbound.channel in BUTTON_CHANNELS
        # The router read the conversation locked in this transaction: its dialog
        # state is what the customer's previous message left, and stays so.
        if conversation.mode != ConversationMode.bot:
            return []
        turn = Turn(
            text=inbound.text,
            button=inbound.button,
            first_contact=arrival.first_contact or not conversation.dialog_state,
            phone=inbound.verified_phone,
            channel=inbound.channel,
            has_buttons=has_buttons,
        )
        context = {**self.context}
        if customer.name:
            context["name"] = customer.name
        try:
            result = self.dialog.handle(
                conversation.dialog_state, turn, now=self.clock.now(), context=context
            )
        except Exception:
            # Nothing is written yet: the message is kept even if the script trips.
            log.exception("bot.dialog_failed", extra={"conversation": conversation.id})
            return []
        messages = list(result.messages)
        target = arrival.reply_target()
        codes: list[Enqueued] = []
        for action in result.actions:
            if action.kind in CLAIMS and inbound.verified_phone is None:
                messages += await self._offer_code(session, target, action, codes)
            messages += await self._act(session, conversation, customer, action)
        await Conversations(session).update(conversation, dialog_state=result.state)
        return codes + [
            await self.replies.stage(
                session,
                target,
                text=message.text,
                buttons=message.buttons if has_buttons else (),
                # Telegram's contact button exists only on a reply keyboard; its
                # other buttons then come back as text the dialog matches.
                inline=not (message.request_contact and inbound.channel == "telegram"),
                author=Author.bot,
            )
            for message in messages
        ]

    async def _act(
        self,
        session: AsyncSession,
        conversation: Conversation,
        customer: Customer | None,
        action: Action,
    ) -> list[OutMessage]:
        if action.kind == "handoff":
            await Conversations(session).update(
                conversation, mode=ConversationMode.waiting, waiting_since=self.clock.now()
            )
            log.info("bot.handoff", extra={"conversation": conversation.id, **action.data})
        elif action.kind == "phone_captured" and customer is not None:
            self._claimed_phone(customer, str(action.data.get("phone", "")))
        elif action.kind == "order_status" and customer is not None:
            return [await self._order_status(session, customer, str(action.data.get("order")))]
        return []

    async def _offer_code(
        self, session: AsyncSession, target: Target, action: Action, codes: list[Enqueued]
    ) -> list[OutMessage]:
        """A typed phone or email proves nothing; a code sent there and typed back here will."""
        if self.codes is None:
            return []
        channel, slot = CLAIMS[action.kind]
        offer = await self.codes.offer_code(
            session, target, channel=channel, address=str(action.data.get(slot, ""))
        )
        if offer is None:
            return []
        if offer.staged is not None:
            codes.append(offer.staged)
        return [OutMessage(offer.text)]

    def _claimed_phone(self, customer: Customer, raw: str) -> None:
        # A typed number is a claim, not proof: it never links to another profile.
        try:
            phone = normalize_phone(raw, self.region)
        except InvalidAddress:
            return
        customer.attributes = {**customer.attributes, "phone_claimed": phone}

    async def _order_status(
        self, session: AsyncSession, customer: Customer, order: str
    ) -> OutMessage:
        events = await session.scalars(
            sa.select(Event)
            .where(col(Event.customer_id) == customer.id, col(Event.type).in_(ORDER_EVENTS))
            .order_by(col(Event.occurred_at).desc())
            .limit(50)
        )
        for event in events:
            number = str(event.data.get("order_id") or event.data.get("order") or "")
            if number == order:
                status = event.data.get("status") or event.type.removeprefix("order_")
                return OutMessage(f"Заказ №{order}: {status}.")
        # Only this customer's own orders are looked up: a number proves nothing.
        return OutMessage(
            f"Не нашёл заказ №{order} среди ваших заказов. "
            "Проверьте номер или напишите «менеджер» — вам помогут."
        )
