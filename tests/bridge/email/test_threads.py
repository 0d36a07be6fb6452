"""Reply matching: replies.py (tokens), threads.py (the store) and the router, end to end.

A reply joins a conversation by its signed reply token, else by In-Reply-To to
mail we sent this very sender, else by the sender's address; a stranger never
gets into someone else's conversation by copying a Message-ID or guessing a token.
"""

from __future__ import annotations

from email.message import EmailMessage

import pytest
import sqlalchemy as sa
from sqlmodel import col

from gateway.bridge.email.compose import reply_token
from gateway.bridge.email.replies import ReplyTokens
from storage.models import Conversation, Customer, Delivery, Identity, Message
from tests.bridge.email.conftest import ROOM_ACCOUNT, ROOM_SECRET, Mailroom

ANNA = "anna@mail.example"


def letter(
    sender: str,
    mid: str,
    text: str,
    *,
    to: str = ROOM_ACCOUNT,
    in_reply_to: str | None = None,
    references: str | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "Re: Заказ 17" if in_reply_to else "Заказ 17"
    message["Message-ID"] = mid
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    message.set_content(text)
    return message.as_bytes()


async def stored(room: Mailroom, mid: str) -> Message:
    async with room.db.session() as session:
        found = await session.scalar(sa.select(Message).where(col(Message.external_id) == mid))
    assert found is not None, mid
    return found


async def customer_of(room: Mailroom, address: str) -> int:
    async with room.db.session() as session:
        identity = await session.scalar(sa.select(Identity).where(Identity.address == address))
    assert identity is not None
    return identity.customer_id


async def opened(room: Mailroom) -> tuple[int, str, str]:
    """Anna writes, we answer: her conversation, our Message-ID, the reply address."""
    await room.receive(letter(f"Анна <{ANNA}>", "<first@mail.example>", "Где мой заказ?"))
    first = await stored(room, "<first@mail.example>")
    _delivery, sent = await room.answer(first.conversation_id, text="Заказ в пути.")
    reply_to = str(sent["Reply-To"].addresses[0].addr_spec)
    return first.conversation_id, str(sent["Message-ID"]), reply_to


async def test_our_answer_threads_under_her_mail_and_carries_the_signed_reply_address(
    mailroom: Mailroom,
) -> None:
    conversation, our_id, reply_to = await opened(mailroom)
    sent = mailroom.relay.received[-1]

    token = reply_token(reply_to, "shop.example")
    assert token is not None
    assert ReplyTokens(ROOM_SECRET).conversation(token) == conversation
    assert len(reply_to.split("@")[0]) <= 64  # RFC 5321 local-part limit
    assert b"In-Reply-To: <first@mail.example>" in sent.content
    async with mailroom.db.session() as session:
        delivery = await session.scalar(sa.select(Delivery))
    assert delivery is not None
    assert delivery.external_id == our_id  # kept for In-Reply-To matching

    # The next answer threads under the whole conversation so far.
    _delivery, second = await mailroom.answer(conversation, text="Доставим завтра.")
    assert second["References"].split() == ["<first@mail.example>", our_id]
    assert second["Subject"] == "Re: Заказ 17"  # the answer had no subject of its own
    assert second["Reply-To"].addresses[0].addr_spec == reply_to


async def test_her_reply_to_the_reply_address_lands_in_her_conversation(
    mailroom: Mailroom,
) -> None:
    conversation, our_id, reply_to = await opened(mailroom)
    await mailroom.receive(
        letter(ANNA, "<r1@mail.example>", "Спасибо!", to=reply_to, in_reply_to=our_id),
        to=reply_to,
    )

    reply = await stored(mailroom, "<r1@mail.example>")
    assert reply.conversation_id == conversation
    assert reply.meta["matched_by"] == "reply_token"
    assert "link_token" not in reply.meta


async def test_a_valid_token_from_her_other_address_joins_her_conversation_without_linking(
    mailroom: Mailroom,
) -> None:
    conversation, _our_id, reply_to = await opened(mailroom)
    await mailroom.receive(
        letter("anna.work@corp.example", "<w1@corp.example>", "Пишу с рабочей почты", to=reply_to),
        to=reply_to,
    )

    moved = await stored(mailroom, "<w1@corp.example>")
    anna = await customer_of(mailroom, ANNA)
    assert moved.conversation_id == conversation
    assert moved.customer_id == anna
    # Knowing the token put the message in the thread; it proved no identity.
    assert await customer_of(mailroom, "anna.work@corp.example") != anna


async def test_her_reply_to_the_plain_address_is_matched_by_in_reply_to(
    mailroom: Mailroom,
) -> None:
    conversation, our_id, _reply_to = await opened(mailroom)
    await mailroom.receive(letter(ANNA, "<r2@mail.example>", "Ок", in_reply_to=our_id))

    reply = await stored(mailroom, "<r2@mail.example>")
    assert reply.conversation_id == conversation
    assert reply.meta["matched_by"] == "in_reply_to"


async def test_a_stranger_copying_our_message_id_gets_a_conversation_of_their_own(
    mailroom: Mailroom,
) -> None:
    conversation, our_id, _reply_to = await opened(mailroom)
    await mailroom.receive(
        letter(
            "mallory@evil.example",
            "<m1@evil.example>",
            "Смените адрес доставки",
            in_reply_to=our_id,
            references=f"<first@mail.example> {our_id}",
        )
    )

    forged = await stored(mailroom, "<m1@evil.example>")
    assert forged.conversation_id != conversation
    assert "matched_by" not in forged.meta
    assert forged.customer_id == await customer_of(mailroom, "mallory@evil.example")


@pytest.mark.parametrize(
    "forged",
    [
        "reply+{conv}-aaaaaaaaaaaaaaaaaaaaaaaaaa@shop.example",  # right shape, wrong signature
        "reply+{next}-{sig}@shop.example",  # a real signature on another conversation id
    ],
)
async def test_a_stranger_guessing_a_token_gets_a_conversation_of_their_own(
    mailroom: Mailroom, forged: str
) -> None:
    conversation, _our_id, reply_to = await opened(mailroom)
    signature = reply_to.split("-", 1)[1].split("@")[0]
    address = forged.format(conv=conversation, next=conversation + 1, sig=signature)
    await mailroom.receive(
        letter("mallory@evil.example", "<m2@evil.example>", "Привет", to=address), to=address
    )

    forged_reply = await stored(mailroom, "<m2@evil.example>")
    assert forged_reply.conversation_id != conversation
    # Handed on to the linking work as an unknown token, where it finds nothing.
    assert forged_reply.meta["link_token"] == address.split("+", 1)[1].split("@")[0]


async def test_a_token_of_a_merged_conversation_leads_to_the_survivor(mailroom: Mailroom) -> None:
    conversation, _our_id, reply_to = await opened(mailroom)
    async with mailroom.db.session() as session:
        survivor_customer = Customer(name="Анна (основной профиль)")
        session.add(survivor_customer)
        await session.flush()
        assert survivor_customer.id is not None
        survivor = Conversation(customer_id=survivor_customer.id)
        session.add(survivor)
        await session.flush()
        old = await session.get(Conversation, conversation)
        assert old is not None
        old.merged_into_id = survivor.id
        survivor_id = survivor.id
    await mailroom.receive(
        letter(ANNA, "<r3@mail.example>", "Ещё вопрос", to=reply_to), to=reply_to
    )

    assert (await stored(mailroom, "<r3@mail.example>")).conversation_id == survivor_id


def test_reply_tokens_verify_without_a_table() -> None:
    tokens = ReplyTokens(ROOM_SECRET)
    token = tokens.issue(12345)
    assert tokens.issue(12345) == token
    assert tokens.conversation(token) == 12345
    assert tokens.conversation(token.upper()) == 12345  # mail systems may fold case
    assert ReplyTokens("another-secret").conversation(token) is None
    assert tokens.conversation(token.replace("12345-", "12346-")) is None
    assert tokens.conversation(token[:-1]) is None
    assert tokens.conversation("a" * 32) is None  # a linking token is not ours to judge
    assert len(token.split("-")[1]) * 5 >= 128  # base32: 5 bits a character
