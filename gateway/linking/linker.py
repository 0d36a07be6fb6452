"""Linking a customer's identities on proof, and only on proof.

Three things prove that whoever writes from an identity is a known customer:
a continuation-link token they followed, Telegram's contact button with their
own phone, and a one-time code sent to a phone or address they claimed and typed
back. Typing a phone or an email proves nothing: it only earns a code, sent to
that phone or address, and the claimant is told the same whoever owns it.

Linking runs inside the router's transaction, before anyone answers: the
identity joins the proven customer (merging the two customers when the identity's
own one has history, survivor = the proven one), so the stored message, the
dialog and the reply all land in the surviving conversation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway.channels import Inbound
from gateway.clock import Clock
from gateway.linking.links import ContinuationChannels, token_in_text
from gateway.linking.texts import Texts
from gateway.linking.tokens import LinkTokens, TokenState
from gateway.outbox import Enqueued, Outbox, Target
from storage.addresses import normalize_email, normalize_phone
from storage.customers import Customers
from storage.errors import Conflict, InvalidAddress
from storage.merges import Merges
from storage.models import Author, ConversationMode, Customer, Identity, Message

__all__ = ["LINK_TTL", "CodeOffer", "Linked", "Linker", "Texts"]

log = logging.getLogger("chatgate.linking")

LINK_TTL = timedelta(days=7)
CODES_PER_DAY = 3  # each code is an SMS we pay for, to a number a stranger typed
_CODE = re.compile(r"^\s*(\d{3})[\s-]?(\d{3})\s*$")
# The channels whose token arrives on purpose (a deep link, a ref): an unknown one
# there is a stale link. Elsewhere (a reply+ address, a text) it may be anything.
_DELIBERATE = frozenset({"telegram", "vk"})

BotUsername = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class CodeOffer:
    """What the claimant is told, and the code message staged to the claimed address."""

    text: str
    staged: Enqueued | None


@dataclass(frozen=True, slots=True)
class Linked:
    """What linking did with one inbound message, carried on its Arrival."""

    customer_id: int  # whom the message belongs to now
    first_contact: bool
    proof: str | None = None  # "token", "phone", "code": the identity was linked by it
    merge_id: int | None = None  # the merge it took, undoable through the API
    notice: str | None = None  # what to tell the customer about it
    answered: bool = False  # the message was a code attempt; the dialog need not see it


class Linker:
    """Issues proof tokens and codes, and links identities when one comes back."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        clock: Clock,
        channels: ContinuationChannels,
        telegram_username: BotUsername | None = None,
        email_account: str | None = None,
        sms_account: str | None = None,
        ttl: timedelta = LINK_TTL,
        region: str = "RU",
        texts: Texts | None = None,
    ) -> None:
        self._outbox = outbox
        self.clock = clock
        self.channels = channels
        self._telegram_username = telegram_username
        self._email_account = email_account
        self._sms_account = sms_account
        self.ttl = ttl
        self.region = region
        self.texts = texts or Texts()

    async def start(self) -> None:
        """Learn the bot's username (getMe): Telegram links are t.me/<username>."""
        await self._learn_username()

    async def aclose(self) -> None:
        return None

    async def _learn_username(self) -> None:
        if self._telegram_username is None or self.channels.telegram_username:
            return
        try:
            username = await self._telegram_username()
        except Exception:
            # Links into the other channels still work; asked again on the next link.
            log.warning("linking.no_telegram_username", exc_info=True)
            return
        if username:
            self.channels = replace(self.channels, telegram_username=username)

    # ----------------------------------------------------------------- issuing

    async def continuation_links(self, session: AsyncSession, customer_id: int) -> dict[str, str]:
        """One fresh single-use link per configured channel, keyed by channel.

        NotFound for an unknown customer; a merged-away id gets its survivor's links.
        """
        customer = await Customers(session).get(customer_id)
        assert customer.id is not None
        await self._learn_username()
        tokens = LinkTokens(session)
        now = self.clock.now()
        links = {}
        for channel in self.channels.names():
            token = await tokens.issue(customer.id, channel, now=now, ttl=self.ttl)
            links[channel] = self.channels.url(channel, token)
        return links

    async def offer_code(
        self, session: AsyncSession, target: Target, *, channel: str, address: str
    ) -> CodeOffer | None:
        """Stage a one-time code to a claimed phone ("sms") or email address ("email").

        Returns what to tell the claimant (the same words whoever owns the address)
        and the staged code message, for release after commit; None when no code can
        be offered (the channel is not set up, the address is malformed or already
        the claimant's own).
        """
        account = self._sms_account if channel == "sms" else self._email_account
        if channel not in {"sms", "email"} or not account:
            return None
        try:
            address = (
                normalize_phone(address, self.region)
                if channel == "sms"
                else normalize_email(address)
            )
        except InvalidAddress:
            return None
        customer = await Customers(session).get(target.customer_id)
        assert customer.id is not None
        if address in {customer.phone, customer.email}:
            return None
        tokens = LinkTokens(session)
        now = self.clock.now()
        if await tokens.codes_since(customer.id, now - timedelta(days=1)) >= CODES_PER_DAY:
            return CodeOffer(self.texts.code_limit, None)
        code = await tokens.issue_code(customer.id, channel=channel, address=address, now=now)
        staged = await self._outbox.stage(
            session,
            Target(
                conversation_id=target.conversation_id,
                customer_id=customer.id,
                channel=channel,
                account=account,
                address=address,
            ),
            text=self.texts.code_message.format(code=code),
            subject=self.texts.code_subject if channel == "email" else None,
            author=Author.system,
            purpose="transactional",
            meta={"link_code": True},
        )
        log.info("linking.code_sent", extra={"customer": customer.id, "channel": channel})
        text = self.texts.code_sent_sms if channel == "sms" else self.texts.code_sent_email
        return CodeOffer(text, staged)

    # ----------------------------------------------------------------- proving

    async def link(
        self,
        session: AsyncSession,
        message: Inbound,
        identity: Identity,
        customer: Customer,
        *,
        first_contact: bool,
    ) -> Linked:
        """Link the message's identity if the message proves whose it is."""
        assert customer.id is not None
        unproven = Linked(customer.id, first_contact)
        token = message.link_token
        if token is None and message.channel == "sms":
            token = token_in_text(message.text)
        found = _CODE.match(message.text) if message.text and not first_contact else None
        if token is None and not message.verified_phone and found is None:
            return unproven  # most messages: nothing to look up
        if await _stored_before(session, message):
            # A redelivery: it proved (or failed to prove) its point the first time.
            return unproven
        if token is not None:
            linked = await self._by_token(
                session, message, identity, customer, token, first_contact
            )
            if linked is not None:
                return linked
        if message.verified_phone:
            linked = await self._by_phone(
                session, identity, customer, message.verified_phone, first_contact
            )
            if linked is not None:
                return linked
        if found is not None:
            linked = await self._by_code(session, identity, customer, "".join(found.groups()))
            if linked is not None:
                return linked
        return unproven

    async def _by_token(
        self,
        session: AsyncSession,
        message: Inbound,
        identity: Identity,
        customer: Customer,
        token: str,
        first_contact: bool,
    ) -> Linked | None:
        assert customer.id is not None
        consumed = await LinkTokens(session).consume(token, now=self.clock.now())
        if consumed.state is TokenState.valid and consumed.customer_id is not None:
            return await self._join(
                session, identity, customer, consumed.customer_id, first_contact, "token"
            )
        log.info(
            "linking.token_refused",
            extra={"state": consumed.state.value, "channel": message.channel},
        )
        if consumed.state is TokenState.unknown and message.channel not in _DELIBERATE:
            return None  # a conversation's reply address or a word that looks like a token
        return Linked(customer.id, first_contact, notice=self.texts.stale_link)

    async def _by_phone(
        self,
        session: AsyncSession,
        identity: Identity,
        customer: Customer,
        raw: str,
        first_contact: bool,
    ) -> Linked | None:
        """Telegram vouches the phone is the sender's own: join whoever holds it."""
        assert customer.id is not None
        try:
            phone = normalize_phone(raw, self.region)
        except InvalidAddress:
            return None
        holder = await Customers(session, region=self.region).find(phone=phone)
        if holder is not None and holder.id != customer.id:
            assert holder.id is not None
            return await self._join(session, identity, customer, holder.id, first_contact, "phone")
        identity.verified = True
        if holder is None and customer.phone is None:
            customer.phone = phone
        await session.flush()
        return None

    async def _by_code(
        self, session: AsyncSession, identity: Identity, customer: Customer, typed: str
    ) -> Linked | None:
        assert customer.id is not None
        check = await LinkTokens(session).check_code(customer.id, typed, now=self.clock.now())
        if check is None:
            return None
        texts = self.texts
        if check.state is TokenState.expired:
            return Linked(customer.id, False, notice=texts.code_expired, answered=True)
        if check.state is TokenState.unknown:
            notice = texts.code_wrong.format(left=check.attempts_left)
            return Linked(customer.id, False, notice=notice, answered=True)
        if check.state is TokenState.used:
            return Linked(customer.id, False, notice=texts.code_dead, answered=True)
        address = check.token.address or ""
        field = "phone" if check.token.channel == "sms" else "email"
        customers = Customers(session, region=self.region)
        holder = await (
            customers.find(phone=address) if field == "phone" else customers.find(email=address)
        )
        if holder is not None and holder.id != customer.id:
            assert holder.id is not None
            linked = await self._join(session, identity, customer, holder.id, False, "code")
            if linked.proof is None:  # the merge was refused: the code is spent, nothing joined
                return Linked(customer.id, False, answered=True)
            return Linked(
                linked.customer_id,
                False,
                proof="code",
                merge_id=linked.merge_id,
                notice=texts.linked,
                answered=True,
            )
        if holder is None and getattr(customer, field) is None:
            setattr(customer, field, address)
            await session.flush()
        return Linked(customer.id, False, proof="code", notice=texts.linked, answered=True)

    async def _join(
        self,
        session: AsyncSession,
        identity: Identity,
        customer: Customer,
        target_id: int,
        first_contact: bool,
        proof: str,
    ) -> Linked:
        """Attach the identity to `target_id`; merge its customer in if it has history."""
        assert customer.id is not None
        assert identity.id is not None
        target = await Customers(session).get(target_id)
        assert target.id is not None
        merge_id = None
        if target.id == customer.id:
            pass  # followed their own link: nothing to join
        elif first_contact:
            await self._adopt(session, identity, customer, target)
        else:
            try:
                merge = await Merges(session).merge(target.id, customer.id, actor=f"link:{proof}")
            except Conflict:
                # Checked before anything moved; the message is stored as if unproven.
                log.warning(
                    "linking.merge_refused",
                    extra={"customer": customer.id, "into": target.id},
                    exc_info=True,
                )
                return Linked(customer.id, first_contact)
            merge_id = merge.id
            await session.refresh(identity)
        identity.verified = True
        await session.flush()
        log.info(
            "linking.linked",
            extra={
                "proof": proof,
                "customer": target.id,
                "identity": identity.id,
                "merge": merge_id,
            },
        )
        return Linked(target.id, False, proof=proof, merge_id=merge_id, notice=self.texts.linked)

    async def _adopt(
        self, session: AsyncSession, identity: Identity, orphan: Customer, target: Customer
    ) -> None:
        """A brand-new customer is only this identity: move it over, drop the empty shell."""
        keys = {
            f: getattr(orphan, f)
            for f in ("phone", "email")
            if getattr(orphan, f) and getattr(target, f) is None
        }
        assert target.id is not None
        identity.customer_id = target.id
        await session.flush()
        await session.delete(orphan)
        await session.flush()  # frees the orphan's unique phone/email first
        for field, value in keys.items():
            setattr(target, field, value)
        if target.name is None and orphan.name:
            target.name = orphan.name
        await session.flush()

    # -------------------------------------------------------------- answering

    async def notify(
        self, session: AsyncSession, linked: Linked | None, target: Target, mode: str
    ) -> list[Enqueued]:
        """Stage what the customer is told about linking, after their message.

        A notice goes only while the bot holds the conversation: a person who took
        it over speaks for the company then.
        """
        if linked is None or not linked.notice or mode != ConversationMode.bot:
            return []
        return [
            await self._outbox.stage(
                session, target, text=linked.notice, author=Author.system, purpose="transactional"
            )
        ]


async def _stored_before(session: AsyncSession, message: Inbound) -> bool:
    if message.external_id is None:
        return False
    found = await session.scalar(
        sa.select(sa.literal(1)).where(
            col(Message.channel) == message.channel,
            col(Message.account) == message.account,
            col(Message.external_id) == message.external_id,
        )
    )
    return found is not None
