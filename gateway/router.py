"""Inbound: dedupe → identity → customer → conversation → store → who answers.

One place decides who answers a customer: the scripted bot while the
conversation is the bot's, nobody (the managers' relay) while a person owns it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway.channels import Inbound, Signal, UpdateKey
from gateway.clock import Clock, SystemClock
from gateway.lanes import chat_key
from gateway.linking import Linked
from gateway.outbox import Enqueued, Outbox, Target
from gateway.stop_commands import COMMAND_CHANNELS, apply_stop_command, stop_command
from storage.conversations import Conversations
from storage.customers import ConsentIn, Customers
from storage.db import Database
from storage.identities import Identities
from storage.inserts import dialect_name, insert_for
from storage.messages import Messages, NewMessage
from storage.models import (
    Author,
    Conversation,
    ConversationMode,
    Customer,
    Delivery,
    DeliveryStatus,
    Direction,
    Identity,
    SeenUpdate,
)

__all__ = ["Arrival", "Router"]

log = logging.getLogger("chatgate.router")

# How far each status is along the way; a signal never moves a delivery back.
STATUS_RANK = {
    DeliveryStatus.queued: 0,
    DeliveryStatus.sending: 1,
    DeliveryStatus.sent: 2,
    DeliveryStatus.delivered: 3,
    DeliveryStatus.read: 4,
    DeliveryStatus.clicked: 5,
    DeliveryStatus.replied: 6,
}
SIGNAL_STATUS = {
    "delivered": DeliveryStatus.delivered,
    "read": DeliveryStatus.read,
    "clicked": DeliveryStatus.clicked,
    "replied": DeliveryStatus.replied,
}
SIGNAL_TIME_FIELD = {
    "delivered": "delivered_at",
    "read": "read_at",
    "clicked": "clicked_at",
    "replied": "replied_at",
}
SEEN_WINDOW = timedelta(days=7)
# Keys past the window are deleted at most this often per process: the DELETE
# scans an index, and it runs in a message's transaction.
PRUNE_EVERY = timedelta(seconds=97)
# What a customer's reply moves to `replied`: our sends they must have seen.
SEEN_BY_A_REPLY = (DeliveryStatus.sent, DeliveryStatus.delivered, DeliveryStatus.read)
KEYWORD_REPLIES = {
    "stop": "Вы отписались от рассылок. Чтобы снова получать их, отправьте START.",
    "start": "Вы снова подписаны на рассылки. Чтобы отписаться, отправьте STOP.",
}


@dataclass(frozen=True, slots=True)
class Arrival:
    """A stored inbound message and where it landed, handed to whoever answers."""

    inbound: Inbound
    customer_id: int
    conversation_id: int
    identity_id: int
    message_id: int
    mode: str
    first_contact: bool
    link: Linked | None = None  # what linking on proof did with this message

    def reply_target(self) -> Target:
        """Where an answer goes: back to the identity the message came from."""
        return Target(
            conversation_id=self.conversation_id,
            customer_id=self.customer_id,
            channel=self.inbound.channel,
            account=self.inbound.account,
            address=self.inbound.address,
            identity_id=self.identity_id,
        )


Answerer = Callable[[Arrival], Awaitable[None]]
StoredHook = Callable[[AsyncSession, Arrival], Awaitable[Sequence[Enqueued]]]
"""Told of a stored inbound message inside its transaction, before anyone answers
(the managers' mirror); what it stages is released after the commit."""


class InboundLinker(Protocol):
    """Links the identity a message came from on proof; see gateway.linking.Linker."""

    async def link(
        self,
        session: AsyncSession,
        message: Inbound,
        identity: Identity,
        customer: Customer,
        *,
        first_contact: bool,
    ) -> Linked: ...

    async def notify(
        self, session: AsyncSession, linked: Linked | None, target: Target, mode: str
    ) -> Sequence[Enqueued]: ...


class BotAnswerer(Protocol):
    """The scripted bot: answers inside the transaction that stored the message."""

    async def answer(
        self,
        session: AsyncSession,
        arrival: Arrival,
        conversation: Conversation,
        customer: Customer,
    ) -> list[Enqueued]: ...

    async def release(self, *staged: Enqueued) -> None:
        """Queue the staged replies once their transaction committed."""
        ...


class Router:
    """Stores what arrives and passes it to the one who answers it."""

    def __init__(
        self, db: Database, *, clock: Clock | None = None, outbox: Outbox | None = None
    ) -> None:
        self.db = db
        self._outbox = outbox
        self.clock = clock or SystemClock()
        self._bot: BotAnswerer | None = None
        self._people: Answerer | None = None
        self._observers: list[Answerer] = []
        self._stored_hooks: list[StoredHook] = []
        self._linker: InboundLinker | None = None
        self._next_prune = self.clock.now() + PRUNE_EVERY

    def link_with(self, linker: InboundLinker) -> None:
        """Link identities on proof (tokens, contact button, codes) before anyone answers."""
        self._linker = linker

    def on_stored(self, hook: StoredHook) -> None:
        """Call `hook` in the transaction of every stored inbound message."""
        self._stored_hooks.append(hook)

    def answer_with(
        self, *, bot: BotAnswerer | None = None, people: Answerer | None = None
    ) -> None:
        """Who answers in bot mode, and who is told while managers own the conversation."""
        if bot is not None:
            self._bot = bot
        if people is not None:
            self._people = people

    def observe(self, observer: Answerer) -> None:
        """Called for every stored inbound message, whoever answers (flows, mirrors)."""
        self._observers.append(observer)

    async def seen(self, source: str, key: str) -> bool:
        # One statement in the shared transaction of concurrent writers costs less
        # than a connection of its own (checkout, BEGIN, ROLLBACK).
        async def unit(session: AsyncSession) -> bool:
            found = await session.scalar(_SEEN, {"source": source, "key": key[:200]})
            return found is not None

        return await self.db.batched(unit, key=key)

    async def first_seen(self, source: str, key: str) -> bool:
        """Remember an update key for a week; True the first time it is offered."""

        async def unit(session: AsyncSession) -> bool:
            return await self._record_seen(session, UpdateKey(source, key))

        return await self.db.batched(unit, key=key)

    async def _record_seen(self, session: AsyncSession, update: UpdateKey) -> bool:
        """Record an update key in the session's transaction; True the first time.

        The first key recorded PRUNE_EVERY after the last pruning prunes again.
        """
        now = self.clock.now()
        prune = now >= self._next_prune
        if prune:
            self._next_prune = now + PRUNE_EVERY
        return await _record_seen(session, update, now, prune=prune)

    async def inbound(self, message: Inbound) -> None:
        """Store what arrived and answer it; the bot's reply commits with the message.

        One transaction holds the update key the message came with, the
        customer's message, the dialog's new state and the reply, so a crash never
        leaves a stored message unanswered nor an update recorded but not stored
        (the platform's resend finds it stored and nothing is doubled). Concurrent
        messages share that transaction's commit (Database.batched).
        """

        async def unit(session: AsyncSession) -> tuple[Arrival, list[Enqueued]] | None:
            return await self._handle(session, message)

        # Keyed by chat, like the outbox's records of what was sent there.
        chat = chat_key(message.channel, message.account, message.address)
        handled = await self.db.batched(unit, key=chat)
        if handled is None:
            return
        arrival, staged = handled
        releaser = self._outbox or self._bot
        if staged and releaser is not None:
            await releaser.release(*staged)
        await self.dispatch(arrival)

    async def _handle(
        self, session: AsyncSession, message: Inbound
    ) -> tuple[Arrival, list[Enqueued]] | None:
        """Store the message and stage every answer to it; None for one stored before.

        Also None, with nothing written, for a message whose update key was recorded.
        """
        update = message.update
        # First, so that a resent update writes nothing at all.
        if update is not None and not await self._record_seen(session, update):
            log.info("router.duplicate_update", extra={"source": update.source, "key": update.key})
            return None
        stored = await self._store(session, message)
        if stored is None:
            return None
        arrival, conversation, customer = stored
        staged: list[Enqueued] = []
        if self._linker is not None:
            staged.extend(
                await self._linker.notify(
                    session, arrival.link, arrival.reply_target(), arrival.mode
                )
            )
        for hook in self._stored_hooks:
            staged.extend(await hook(session, arrival))
        keyword = message.meta.get("sms_keyword") or await stop_command(
            session, message, arrival.customer_id
        )
        # Out-of-office replies and the like are stored, never answered.
        answering = arrival.mode == ConversationMode.bot and not message.auto_reply
        if arrival.link is not None and arrival.link.answered:
            answering = False  # a code typed back: linking has answered it
        if keyword in KEYWORD_REPLIES and self._outbox is not None:
            # STOP/START work whoever owns the conversation, and are always confirmed.
            staged.append(await self._opt(session, arrival, str(keyword)))
        elif self._bot is not None and answering:
            staged.extend(await self._bot.answer(session, arrival, conversation, customer))
        return arrival, staged

    async def _opt(self, session: AsyncSession, arrival: Arrival, keyword: str) -> Enqueued:
        """STOP withdraws marketing consent on the channel, START restores it; confirmed."""
        assert self._outbox is not None
        inbound = arrival.inbound
        await Customers(session).set_consent(
            arrival.customer_id,
            ConsentIn(
                channel=inbound.channel,
                purpose="marketing",
                granted=keyword == "start",
                source=f"{inbound.channel} {keyword.upper()}",
            ),
        )
        log.info("router.consent", extra={"customer": arrival.customer_id, "keyword": keyword})
        reply = KEYWORD_REPLIES[keyword]
        if inbound.channel in COMMAND_CHANNELS:
            # /stop and /start in a messenger cover transactional messages too.
            reply = await apply_stop_command(session, arrival.customer_id, inbound.channel, keyword)
        return await self._outbox.stage(
            session,
            arrival.reply_target(),
            text=reply,
            author=Author.system,
            purpose="transactional",
        )

    async def _store(
        self, session: AsyncSession, message: Inbound
    ) -> tuple[Arrival, Conversation, Customer] | None:
        identities = Identities(session)
        identity, customer, first_contact = await identities.resolve(
            channel=message.channel,
            account=message.account,
            address=message.address,
            display_name=message.name,
            username=message.username,
        )
        assert identity.id is not None
        assert customer.id is not None
        linked = None
        if self._linker is not None:
            # Same transaction, before the conversation is chosen: a proven identity's
            # message lands in the surviving customer's conversation.
            linked = await self._linker.link(
                session, message, identity, customer, first_contact=first_contact
            )
            if linked.customer_id != customer.id:
                customer = await Customers(session).get(linked.customer_id)
            first_contact = linked.first_contact
        assert customer.id is not None
        if not identity.reachable:
            # Writing to us means the channel works again (unblocked, allowed).
            await identities.mark_reachable(identity.id)
        conversations = Conversations(session)
        # A channel's proof (an email's signed reply token) may name the conversation.
        # Locked: another message of this customer waits until this one is answered,
        # so the dialog reads the state the previous answer left.
        conversation = await _named(conversations, message) or await conversations.open_for(
            customer.id, lock=True
        )
        assert conversation.id is not None
        stored, created = await Messages(session).append(
            NewMessage(
                conversation_id=conversation.id,
                customer_id=conversation.customer_id,
                channel=message.channel,
                account=message.account,
                direction=Direction.inbound,
                author=Author.customer,
                text=message.text,
                external_id=message.external_id,
                attachments=[a.as_json() for a in message.attachments],
                meta=_meta(message),
                kind="button" if message.button is not None else "text",
                sent_at=message.sent_at,
            )
        )
        if not created:
            return None
        assert stored.id is not None
        if conversation.mode == ConversationMode.closed:
            await conversations.update(conversation, mode=ConversationMode.bot, assignee_id=None)
        await _replied(session, conversation, message.channel, self.clock.now())
        arrival = Arrival(
            inbound=message,
            customer_id=conversation.customer_id,
            conversation_id=conversation.id,
            identity_id=identity.id,
            message_id=stored.id,
            mode=conversation.mode,
            first_contact=first_contact,
            link=linked,
        )
        return arrival, conversation, customer

    async def dispatch(self, arrival: Arrival) -> None:
        """Tell observers of a stored message, and the managers' side when it is theirs."""
        for observer in self._observers:
            await _guarded(observer, arrival, "observer")
        if arrival.inbound.auto_reply or arrival.mode == ConversationMode.bot:
            return
        if self._people is not None:
            await _guarded(self._people, arrival, "people")

    async def signal(self, signal: Signal) -> None:
        """Move a delivery forward: delivered, read, clicked, replied; or failed."""
        at = signal.at or self.clock.now()
        async with self.db.session() as session:
            deliveries = await _signalled(session, signal)
            for delivery in deliveries:
                _apply(delivery, signal, at)
            if signal.kind in {"failed", "bounced", "blocked"} and deliveries:
                identity_id = deliveries[0].identity_id
                if identity_id is not None and signal.kind != "failed":
                    await Identities(session).mark_unreachable(identity_id, signal.kind)
        if not deliveries:
            log.info(
                "router.signal_unmatched",
                extra={"kind": signal.kind, "channel": signal.channel, "ext": signal.external_id},
            )

    async def reachability(
        self, channel: str, account: str, address: str, *, reachable: bool, reason: str
    ) -> None:
        async with self.db.session() as session:
            identity = await session.scalar(
                sa.select(Identity).where(
                    col(Identity.channel) == channel,
                    col(Identity.account) == account,
                    col(Identity.address) == address,
                )
            )
            if identity is None or identity.id is None:
                return
            identities = Identities(session)
            if reachable:
                await identities.mark_reachable(identity.id)
            else:
                await identities.mark_unreachable(identity.id, reason)
        log.info(
            "router.reachability",
            extra={"channel": channel, "address": address, "reachable": reachable, "why": reason},
        )


_SEEN = sa.select(sa.literal(1)).where(
    col(SeenUpdate.source) == sa.bindparam("source"), col(SeenUpdate.key) == sa.bindparam("key")
)


async def _record_seen(
    session: AsyncSession, update: UpdateKey, now: datetime, *, prune: bool
) -> bool:
    """Insert an update key in the session's transaction; True the first time it is offered.

    With `prune`, keys older than the window go too: now and then is enough to keep
    the table to about one window's worth.
    """
    result = await session.execute(
        _seen_insert(dialect_name(session)),
        {"source": update.source, "key": update.key[:200], "seen_at": now},
    )
    inserted = result.first() is not None
    if inserted and prune:
        await session.execute(
            sa.delete(SeenUpdate).where(col(SeenUpdate.seen_at) < now - SEEN_WINDOW)
        )
    return inserted


@functools.cache
def _seen_insert(dialect: str) -> Any:
    """Built once per backend: every update offered runs it."""
    table: sa.Table = SeenUpdate.__table__  # type: ignore[attr-defined]
    return insert_for(dialect, table).on_conflict_do_nothing().returning(table.c.key)


async def _replied(
    session: AsyncSession, conversation: Conversation, channel: str, now: datetime
) -> None:
    """A customer's message is the strongest signal: our latest sends were seen."""
    await session.execute(
        _REPLIED,
        {
            "replier": conversation.customer_id,
            "reply_channel": channel,
            "since": now - timedelta(days=7),
            "replied": now,
        },
    )


def _replied_statement() -> sa.Update:
    """Built once: every inbound message runs it."""
    table: sa.Table = Delivery.__table__  # type: ignore[attr-defined]
    when = sa.bindparam("replied", type_=table.c.replied_at.type)
    return (
        sa.update(table)
        .where(
            table.c.customer_id == sa.bindparam("replier"),
            table.c.channel == sa.bindparam("reply_channel"),
            table.c.status.in_([s.value for s in SEEN_BY_A_REPLY]),
            table.c.sent_at >= sa.bindparam("since", type_=table.c.sent_at.type),
        )
        .values(status=DeliveryStatus.replied.value, replied_at=when, updated_at=when)
    )


_REPLIED = _replied_statement()


async def _signalled(session: AsyncSession, signal: Signal) -> Sequence[Delivery]:
    query = sa.select(Delivery).where(col(Delivery.channel) == signal.channel)
    if signal.delivery_id is not None:
        query = query.where(col(Delivery.id) == signal.delivery_id)
    elif signal.kind == "read" and signal.address is not None:
        # Messengers report "read up to": everything we sent to the chat until then.
        query = query.where(
            col(Delivery.account) == signal.account,
            col(Delivery.address) == signal.address,
            col(Delivery.status).in_([DeliveryStatus.sent, DeliveryStatus.delivered]),
        )
        upto = await _by_external(session, signal)
        if upto is not None:
            query = query.where(col(Delivery.id) <= upto.id)
    elif signal.external_id is not None:
        query = query.where(
            col(Delivery.account) == signal.account,
            col(Delivery.external_id) == signal.external_id,
        )
    else:
        return []
    return list(await session.scalars(query.with_for_update()))


async def _by_external(session: AsyncSession, signal: Signal) -> Delivery | None:
    if signal.external_id is None:
        return None
    result = await session.scalars(
        sa.select(Delivery).where(
            col(Delivery.channel) == signal.channel,
            col(Delivery.account) == signal.account,
            col(Delivery.external_id) == signal.external_id,
        )
    )
    return result.first()


def _apply(delivery: Delivery, signal: Signal, at: datetime) -> None:
    if signal.kind in {"failed", "bounced", "blocked"}:
        if (
            STATUS_RANK.get(DeliveryStatus(delivery.status), 0)
            >= STATUS_RANK[DeliveryStatus.delivered]
        ):
            return  # a late failure report never undoes a delivery we saw
        delivery.status = DeliveryStatus.failed
        delivery.final = True
        delivery.error = signal.detail or signal.kind
        delivery.failed_at = at
        delivery.updated_at = at
        return
    if signal.machine:
        delivery.payload = {**delivery.payload, f"machine_{signal.kind}_at": at.isoformat()}
        return
    status = SIGNAL_STATUS.get(signal.kind)
    if status is None:
        return
    field = SIGNAL_TIME_FIELD[signal.kind]
    if getattr(delivery, field) is None:
        setattr(delivery, field, at)
    if delivery.status == DeliveryStatus.failed:
        return
    if STATUS_RANK[status] > STATUS_RANK.get(DeliveryStatus(delivery.status), 0):
        delivery.status = status
        delivery.updated_at = at


async def _named(conversations: Conversations, message: Inbound) -> Conversation | None:
    """The live conversation a channel proved the message belongs to, if any.

    Only the email bridge sets `meta["conversation_id"]`, and only from a reply
    token it verified; a merged conversation leads to the one it was merged into.
    """
    wanted = message.meta.get("conversation_id") if message.channel == "email" else None
    for _ in range(8):
        if not isinstance(wanted, int) or isinstance(wanted, bool):
            return None
        found = await conversations.session.get(
            Conversation, wanted, with_for_update=True, populate_existing=True
        )
        if found is None or found.merged_into_id is None:
            return found
        wanted = found.merged_into_id
    return None


def _meta(message: Inbound) -> dict[str, Any]:
    meta: dict[str, Any] = dict(message.meta)
    for key in ("username", "verified_phone", "link_token", "button"):
        value = getattr(message, key)
        if value is not None:
            meta[key] = value
    if message.auto_reply:
        meta["auto_reply"] = True
    return meta


async def _guarded(callback: Answerer, arrival: Arrival, role: str) -> None:
    # The message is stored; a failing answerer must not make the channel retry it.
    try:
        await callback(arrival)
    except Exception:
        log.exception(
            "router.answer_failed",
            extra={"role": role, "conversation": arrival.conversation_id},
        )
