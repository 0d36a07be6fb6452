"""What managers do to a conversation, from a topic or from a CRM through the API.

Every action is one transaction: the conversation's new state, what the customer
is told, and the line for the managers' topic are stored together, then queued.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from html import escape
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway.clock import Clock
from gateway.desk.cards import BADGES, badge, card_html, message_line
from gateway.desk.mirror import DESK_ORIGIN, Mirror
from gateway.desk.routing import CHANNELS, NoChannel, Route, reply_route
from gateway.outbox import Enqueued, Outbox
from storage.conversations import Conversations
from storage.customers import Customers
from storage.db import Database
from storage.errors import NotFound
from storage.identities import Identities
from storage.messages import Messages, NewMessage
from storage.models import (
    Author,
    Conversation,
    ConversationMode,
    Delivery,
    Direction,
    Manager,
    Message,
)

__all__ = ["Actor", "Desk", "DeskError", "LinkIssuer"]

log = logging.getLogger("chatgate.desk")

JOINED = "К диалогу подключился менеджер{name}. Он видит всю переписку — продолжайте здесь."
BOT_BACK = "Менеджер завершил разговор, с вами снова бот. Напишите «менеджер», если нужен человек."
MAX_NOTICE = 3800


class DeskError(ValueError):
    """A manager's request that cannot be done; the message says why, in their words."""


class LinkIssuer(Protocol):
    """gateway/linking.py's Linker: continuation links keyed by channel."""

    async def continuation_links(
        self, session: AsyncSession, customer_id: int
    ) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a manager in the group (Telegram user id), or a CRM over the API."""

    telegram_user_id: int | None = None
    name: str | None = None
    username: str | None = None
    manager_id: int | None = None  # an existing Manager row (the API names one)


@dataclass
class _Work:
    """What one action staged, to queue after its transaction commits."""

    staged: list[Enqueued]
    copies: list[int]


class Desk:
    """Managers' actions on conversations; each call is one transaction.

    Without a managers' group (`mirror` None) the API still acts; nothing is mirrored.
    """

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        mirror: Mirror | None,
        *,
        clock: Clock,
        linker: LinkIssuer | None = None,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self._mirror = mirror
        self.clock = clock
        self.linker = linker

    @property
    def mirror(self) -> Mirror:
        """The managers' group mirror; LookupError when there is no group."""
        if self._mirror is None:
            raise LookupError("no managers' group is configured")
        return self._mirror

    # ------------------------------------------------------------ lookups

    async def conversation_for_topic(self, topic_id: int) -> int | None:
        async with self.db.session() as session:
            found = await Conversations(session).by_topic(topic_id)
            return None if found is None else found.id

    async def queue(self) -> str:
        """/queue: the conversations waiting for a person, oldest first."""
        async with self.db.session() as session:
            rows = await Conversations(session).listing(status=ConversationMode.waiting, limit=50)
            lines = [await self._summary(session, c) for c in reversed(rows)]
        return "\n".join(["<b>Ждут ответа</b>", *lines]) if lines else "Очередь пуста."

    async def mine(self, actor: Actor) -> str:
        """/mine: the conversations this manager owns."""
        async with self.db.session() as session:
            manager = await self._manager(session, actor)
            rows = await Conversations(session).listing(
                status=ConversationMode.manager, assignee_id=manager.id, limit=50
            )
            lines = [await self._summary(session, c) for c in rows]
        return "\n".join(["<b>Ваши диалоги</b>", *lines]) if lines else "У вас нет диалогов."

    # ------------------------------------------------------------ actions

    async def take(self, conversation_id: int, actor: Actor) -> Conversation:
        """/take and the API's assign: the actor owns it, the bot goes silent."""
        async with self.db.session() as session:
            work = _Work([], [])
            conversation = await self._conversation(session, conversation_id)
            manager = await self._manager(session, actor)
            await self._take(session, conversation, manager, work)
        await self._release(work)
        return conversation

    async def release(self, conversation_id: int, actor: Actor) -> Conversation:
        """/release: back to the bot; the customer is told."""
        async with self.db.session() as session:
            work = _Work([], [])
            conversation = await self._conversation(session, conversation_id)
            manager = await self._manager(session, actor)
            await _unassign(session, conversation, ConversationMode.bot)
            await self._tell(session, conversation, BOT_BACK, work)
            await self._notice(
                session, conversation, f"🤖 {_who(manager)} вернул(а) диалог боту", work
            )
        await self._release(work)
        return conversation

    async def close(self, conversation_id: int, actor: Actor) -> Conversation:
        """/close: closed; the customer's next message reopens it, with the bot."""
        async with self.db.session() as session:
            work = _Work([], [])
            conversation = await self._conversation(session, conversation_id)
            manager = await self._manager(session, actor)
            await _unassign(session, conversation, ConversationMode.closed)
            await self._notice(session, conversation, f"✅ {_who(manager)} закрыл(а) диалог", work)
        await self._release(work)
        return conversation

    async def reply(
        self, conversation_id: int, actor: Actor, text: str, *, origin: str = "topic"
    ) -> int:
        """A manager's message to the customer: stored, then sent on the reply channel.

        A reply in a conversation nobody took takes it. Returns the message id.
        """
        if not text.strip():
            raise DeskError("пустое сообщение")
        async with self.db.session() as session:
            work = _Work([], [])
            conversation = await self._conversation(session, conversation_id)
            manager = await self._manager(session, actor)
            if conversation.mode != ConversationMode.manager or conversation.assignee_id is None:
                await self._take(session, conversation, manager, work)
            route = await self._route(session, conversation)
            if route.detour:
                await self._notice(session, conversation, "⚠️ " + escape(route.detour), work)
            sent = await self.outbox.stage(
                session,
                route.target,
                text=text,
                author=Author.manager,
                author_ref=str(manager.id),
                meta={DESK_ORIGIN: origin},
            )
            work.staged.append(sent)
        await self._release(work)
        log.info(
            "desk.reply", extra={"conversation": conversation_id, "message_id": sent.message_id}
        )
        return sent.message_id

    async def unreachable(self, delivery: Delivery, reason: str) -> None:
        """Outbox hook: a manager's reply failed finally; send it on the next reachable
        channel, and tell the topic. Other messages (bot, flows) are not re-routed."""
        if delivery.purpose == "desk":
            return
        async with self.db.session() as session:
            work = _Work([], [])
            message = await session.get(Message, delivery.message_id)
            if message is None or message.author != Author.manager:
                return
            conversation = await self._conversation(session, message.conversation_id)
            failed = delivery.identity_id
            exclude: frozenset[int] = frozenset() if failed is None else frozenset({failed})
            try:
                route = await reply_route(session, conversation, exclude=exclude)
            except NoChannel:
                await self._notice(
                    session,
                    conversation,
                    f"⛔ {badge(delivery.channel)} {escape(reason[:200])} — "
                    "других доступных каналов у клиента нет",
                    work,
                )
            else:
                await self._notice(
                    session,
                    conversation,
                    f"⚠️ {badge(delivery.channel)} не доставлено ({escape(reason[:200])}) — "
                    f"ответ ушёл в {badge(route.target.channel)}",
                    work,
                )
                work.staged.append(
                    await self.outbox.stage(
                        session,
                        route.target,
                        text=message.text,
                        author=Author.manager,
                        author_ref=message.author_ref,
                        meta={DESK_ORIGIN: "rerouted", "rerouted_from": delivery.id},
                    )
                )
        await self._release(work)
        log.info("desk.rerouted", extra={"delivery": delivery.id})

    async def history(self, conversation_id: int, n: int = 20) -> None:
        """/history [N]: the last N messages across all channels, into the topic."""
        n = max(1, min(n, 200))
        async with self.db.session() as session:
            work = _Work([], [])
            conversation = await self._conversation(session, conversation_id)
            customer = await Customers(session).get(conversation.customer_id)
            items = await Messages(session).last(conversation.id or 0, n)
            lines = [message_line(item, customer.name or "клиент") for item in items]
            chunk: list[str] = [f"<b>Последние {len(items)}</b>"]
            for line in lines:
                if sum(len(x) + 1 for x in chunk) + len(line) > MAX_NOTICE:
                    await self._notice(session, conversation, "\n".join(chunk), work)
                    chunk = []
                chunk.append(line)
            await self._notice(session, conversation, "\n".join(chunk), work)
        await self._release(work)

    async def note(self, conversation_id: int, actor: Actor, text: str) -> int:
        """/note: an internal note in the history; never sent to the customer."""
        if not text.strip():
            raise DeskError("пустая заметка: /note <текст>")
        async with self.db.session() as session:
            conversation = await self._conversation(session, conversation_id)
            manager = await self._manager(session, actor)
            message, _ = await Messages(session).append(
                NewMessage(
                    conversation_id=conversation.id or 0,
                    customer_id=conversation.customer_id,
                    channel=conversation.last_inbound_channel or "telegram",
                    direction=Direction.outbound,
                    author=Author.manager,
                    author_ref=str(manager.id),
                    kind="note",
                    text=text,
                    sent_at=self.clock.now(),
                )
            )
            assert message.id is not None
            return message.id

    async def via(self, conversation_id: int, channel: str) -> None:
        """/via <channel>: where the next replies go."""
        channel = channel.strip().lower()
        if channel not in CHANNELS:
            raise DeskError(f"канал один из: {', '.join(CHANNELS)}")
        async with self.db.session() as session:
            work = _Work([], [])
            conversation = await self._conversation(session, conversation_id)
            identities = await Identities(session).for_customer(conversation.customer_id)
            if not any(i.channel == channel and i.reachable for i in identities):
                raise DeskError(f"у клиента нет доступного адреса в {BADGES[channel]}")
            await Conversations(session).update(conversation, reply_via=channel)
            await self._notice(session, conversation, f"↪️ ответы уходят в {badge(channel)}", work)
        await self._release(work)

    async def link(self, conversation_id: int) -> dict[str, str]:
        """/link: send the customer links that continue this dialogue in other channels."""
        if self.linker is None:
            raise DeskError("ссылки на продолжение недоступны: связывание каналов не настроено")
        async with self.db.session() as session:
            work = _Work([], [])
            conversation = await self._conversation(session, conversation_id)
            links = await self.linker.continuation_links(session, conversation.customer_id)
            if not links:
                raise DeskError("нет каналов, куда можно перейти")
            text = "Продолжить разговор в другом мессенджере:\n" + "\n".join(
                f"{BADGES.get(ch, ch)}: {url}" for ch, url in links.items()
            )
            await self._tell(session, conversation, text, work)
            await self._notice(session, conversation, "🔗 ссылки отправлены клиенту", work)
        await self._release(work)
        return links

    async def card(self, conversation_id: int) -> None:
        """/card: the customer card again, as of now, and the topic renamed to match."""
        async with self.db.session() as session:
            work = _Work([], [])
            conversation = await self._conversation(session, conversation_id)
            card = await card_html(session, conversation, history=0)
            if self._mirror is not None:  # the topic's name follows the customer's channels
                work.copies.append(
                    await self._mirror.notice(session, conversation, card.html, retitle=True)
                )
        await self._release(work)

    async def say(self, conversation_id: int, html: str) -> None:
        """A line for the managers in the conversation's topic (errors, refusals)."""
        async with self.db.session() as session:
            work = _Work([], [])
            conversation = await self._conversation(session, conversation_id)
            await self._notice(session, conversation, html, work)
        await self._release(work)

    # ------------------------------------------------------------ inside

    async def _take(
        self,
        session: AsyncSession,
        conversation: Conversation,
        manager: Manager,
        work: _Work,
    ) -> None:
        if conversation.mode == ConversationMode.manager and conversation.assignee_id == manager.id:
            await self._notice(session, conversation, "Диалог уже у вас", work)
            return
        if self._mirror is not None:
            work.copies += await self._mirror.open(session, conversation)
        await Conversations(session).update(
            conversation, mode=ConversationMode.manager, assignee_id=manager.id, waiting_since=None
        )
        first = (manager.name or "").split(" ")[0]
        await self._tell(
            session, conversation, JOINED.format(name=f" {first}" if first else ""), work
        )
        await self._notice(session, conversation, f"✋ {_who(manager)} взял(а) диалог", work)
        log.info("desk.taken", extra={"conversation": conversation.id, "manager": manager.id})

    async def _tell(
        self, session: AsyncSession, conversation: Conversation, text: str, work: _Work
    ) -> None:
        """Tell the customer (a system message on the reply channel); skipped if unreachable."""
        try:
            route = await self._route(session, conversation)
        except DeskError:
            return
        work.staged.append(
            await self.outbox.stage(
                session, route.target, text=text, author=Author.system, purpose="transactional"
            )
        )

    async def _route(self, session: AsyncSession, conversation: Conversation) -> Route:
        try:
            return await reply_route(session, conversation)
        except NoChannel:
            raise DeskError("у клиента нет ни одного доступного канала") from None

    async def _notice(
        self, session: AsyncSession, conversation: Conversation, html: str, work: _Work
    ) -> None:
        if self._mirror is not None:  # no managers' group: nowhere to say it
            work.copies.append(await self._mirror.notice(session, conversation, html))

    async def _release(self, work: _Work) -> None:
        await self.outbox.release(*work.staged)
        if work.copies:
            await self.outbox.release(Enqueued(0, (), 0.0, tuple(work.copies)))

    async def _conversation(self, session: AsyncSession, conversation_id: int) -> Conversation:
        conversation = await session.get(
            Conversation, conversation_id, populate_existing=True, with_for_update=True
        )
        hops = 0
        while conversation is not None and conversation.merged_into_id is not None and hops < 5:
            conversation = await session.get(
                Conversation, conversation.merged_into_id, populate_existing=True
            )
            hops += 1
        if conversation is None:
            raise NotFound("conversation", conversation_id)
        return conversation

    async def _manager(self, session: AsyncSession, actor: Actor) -> Manager:
        """The acting manager's row, created on a group member's first action."""
        if actor.manager_id is not None:
            found = await session.get(Manager, actor.manager_id)
            if found is None:
                raise NotFound("manager", actor.manager_id)
            return found
        if actor.telegram_user_id is None:
            raise DeskError("who acts? a manager id or a Telegram user id is needed")
        found = await session.scalar(
            sa.select(Manager).where(col(Manager.telegram_user_id) == actor.telegram_user_id)
        )
        if found is None:
            found = Manager(
                telegram_user_id=actor.telegram_user_id, name=actor.name, username=actor.username
            )
            session.add(found)
            await session.flush()
        elif actor.name and found.name != actor.name:
            found.name = actor.name
        return found

    async def _summary(self, session: AsyncSession, conversation: Conversation) -> str:
        customer = await Customers(session).get(conversation.customer_id)
        since = conversation.waiting_since or conversation.updated_at
        name = escape(customer.name or f"клиент #{customer.id}")
        channel = badge(conversation.last_inbound_channel or "?")
        return f"#{conversation.id} {name} {channel} с {since.strftime('%d.%m %H:%M')}"


async def _unassign(
    session: AsyncSession, conversation: Conversation, mode: ConversationMode
) -> None:
    """Nobody owns it any more (/release: the bot; /close: closed); no reply or dialog pending."""
    await Conversations(session).update(
        conversation,
        mode=mode,
        assignee_id=None,
        reply_via=None,
        waiting_since=None,
        dialog_state={},
    )


def _who(manager: Manager) -> str:
    return escape(manager.name or (manager.username and f"@{manager.username}") or "менеджер")
