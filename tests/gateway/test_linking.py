"""Linking on proof through the real router, outbox and dialog, on SQLite and PostgreSQL.

A customer with history writes in VK; someone then arrives on Telegram, email or
SMS with a token, a shared contact or a code. Only proof joins them: the tests
check where the message landed, what was merged, and what each person was told.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import sqlalchemy as sa
from sqlmodel import col

from bots.dialog import Dialog, load_script
from bots.dialog.responder import BotResponder
from gateway.app import DEFAULT_SCRIPT
from gateway.broker.memory import MemoryBroker
from gateway.channels import Inbound
from gateway.clock import FakeClock
from gateway.linking import ContinuationChannels, Linker
from gateway.outbox import Outbox
from gateway.router import Router
from storage.customers import Customers
from storage.db import Database
from storage.merges import Merges
from storage.models import Customer, Delivery, Identity, LinkToken, Merge, Message

SMS_NUMBER = "+79990000000"
SHOP_MAIL = "support@shop.example"
ANNA_PHONE = "+79161234567"
ANNA_EMAIL = "anna@example.ru"

_ids = itertools.count(1)


class World:
    """The router as the app wires it, with every channel configured, on a fake clock."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = FakeClock()
        self.outbox = Outbox(db, MemoryBroker(), now=self.clock.now)
        self.linker = Linker(
            self.outbox,
            clock=self.clock,
            channels=ContinuationChannels(
                telegram_username="shop_bot",
                vk_group_id=42,
                email_domain="shop.example",
                sms_number=SMS_NUMBER,
            ),
            email_account=SHOP_MAIL,
            sms_account=SMS_NUMBER,
        )
        self.router = Router(db, clock=self.clock, outbox=self.outbox)
        self.router.link_with(self.linker)
        self.router.answer_with(
            bot=BotResponder(
                db,
                self.outbox,
                Dialog(load_script(DEFAULT_SCRIPT)),
                clock=self.clock,
                codes=self.linker,
            )
        )

    async def write(self, channel: str, address: str, text: str = "Привет", **fields: Any) -> None:
        account = {"telegram": "1", "vk": "42", "sms": SMS_NUMBER, "email": SHOP_MAIL}[channel]
        fields.setdefault("external_id", f"{channel}-{next(_ids)}")
        await self.router.inbound(
            Inbound(channel=channel, account=account, address=address, text=text, **fields)
        )

    async def anna(self) -> int:
        """A VK customer with history, a name, a phone and an email."""
        await self.write("vk", "1001", "Здравствуйте, где мой заказ?", name="Анна Петрова")
        async with self.db.session() as s:
            identity = await s.scalar(sa.select(Identity).where(col(Identity.address) == "1001"))
            assert identity is not None
            customer = await s.get(Customer, identity.customer_id)
            assert customer is not None
            customer.phone, customer.email = ANNA_PHONE, ANNA_EMAIL
            return identity.customer_id

    async def links(self, customer_id: int) -> dict[str, str]:
        async with self.db.session() as s:
            return await self.linker.continuation_links(s, customer_id)

    async def owner(self, channel: str, address: str) -> int:
        """The surviving customer an identity belongs to."""
        async with self.db.session() as s:
            identity = await s.scalar(
                sa.select(Identity).where(
                    col(Identity.channel) == channel, col(Identity.address) == address
                )
            )
            assert identity is not None, f"no {channel} identity {address}"
            return (await Customers(s).get(identity.customer_id)).id or 0

    async def told(self, channel: str, address: str) -> list[str]:
        """Every text queued to one address, in order."""
        async with self.db.session() as s:
            rows = await s.execute(
                sa.select(col(Message.text))
                .join(Delivery, col(Delivery.message_id) == col(Message.id))
                .where(col(Delivery.channel) == channel, col(Delivery.address) == address)
                .order_by(col(Delivery.id))
            )
            return [text for (text,) in rows]

    async def history(self, customer_id: int) -> list[tuple[str, str, str]]:
        async with self.db.session() as s:
            rows = await s.execute(
                sa.select(col(Message.channel), col(Message.direction), col(Message.text))
                .where(col(Message.customer_id) == customer_id)
                .order_by(col(Message.id))
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]

    async def rows(self, model: Any) -> list[Any]:
        async with self.db.session() as s:
            return list(await s.scalars(sa.select(model).order_by(col(model.id))))


def _token(url: str) -> str:
    """The token a continuation link carries."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "mailto":
        return unquote(parts.path).split("+", 1)[1].split("@", 1)[0]
    if parts.scheme == "sms":
        return query["body"][0].rsplit(" ", 1)[1]
    return (query.get("start") or query["ref"])[0]


def _code(texts: list[str]) -> str:
    found = re.search(r"\b(\d{6})\b", texts[-1])
    assert found is not None, texts
    return found.group(1)


# ------------------------------------------------------------------ the links


async def test_links_for_every_channel_carry_distinct_unguessable_tokens_stored_hashed(
    database: Database,
) -> None:
    world = World(database)
    anna = await world.anna()
    links = await world.links(anna)
    assert list(links) == ["telegram", "vk", "email", "sms"]
    assert re.fullmatch(r"https://t\.me/shop_bot\?start=[A-Za-z0-9_-]{22,64}", links["telegram"])
    assert re.fullmatch(r"https://vk\.me/club42\?ref=[A-Za-z0-9_-]{22,}", links["vk"])
    assert re.fullmatch(r"mailto:reply\+[0-9a-f]{32}@shop\.example\?subject=.+", links["email"])
    assert links["sms"].startswith(f"sms:{SMS_NUMBER}?body=")
    tokens = [_token(url) for url in links.values()]
    assert len(set(tokens)) == 4
    stored = await world.rows(LinkToken)
    assert {t.token_hash for t in stored} == {
        hashlib.sha256(t.encode()).hexdigest() for t in tokens
    }
    assert not {t.token_hash for t in stored} & set(tokens)  # never the token itself
    assert {(t.customer_id, t.purpose) for t in stored} == {(anna, "link")}
    assert {t.expires_at - world.clock.now() for t in stored} == {world.linker.ttl}


# ------------------------------------------------------------------ link tokens


async def test_a_telegram_deep_link_brings_a_new_telegram_user_into_the_vk_customer(
    database: Database,
) -> None:
    world = World(database)
    anna = await world.anna()
    token = _token((await world.links(anna))["telegram"])
    await world.write("telegram", "555", "/start", link_token=token, name="Анна")

    assert await world.owner("telegram", "555") == anna
    history = await world.history(anna)
    assert ("vk", "in", "Здравствуйте, где мой заказ?") in history
    assert ("telegram", "in", "/start") in history
    told = await world.told("telegram", "555")
    assert "продолжаем наш разговор" in told[0]
    assert not any("Здравствуйте" in t for t in told)  # continued, not greeted anew
    # No empty second profile is left behind, and nothing needed merging.
    assert len(await world.rows(Customer)) == 1
    assert await world.rows(Merge) == []
    [identity] = [i for i in await world.rows(Identity) if i.channel == "telegram"]
    assert identity.verified


async def test_a_telegram_user_with_history_is_merged_and_the_merge_can_be_undone(
    database: Database,
) -> None:
    world = World(database)
    anna = await world.anna()
    await world.write("telegram", "555", "Есть доставка в Казань?")
    stranger = await world.owner("telegram", "555")
    assert stranger != anna

    token = _token((await world.links(anna))["telegram"])
    await world.write("telegram", "555", "/start", link_token=token)

    assert await world.owner("telegram", "555") == anna
    [merge] = await world.rows(Merge)
    assert (merge.survivor_id, merge.absorbed_id, merge.actor) == (anna, stranger, "link:token")
    history = [text for _, _, text in await world.history(anna)]
    assert "Есть доставка в Казань?" in history
    assert "Здравствуйте, где мой заказ?" in history

    async with database.session() as s:
        await Merges(s).unmerge(merge.id)
    assert await world.owner("telegram", "555") == stranger
    assert "Есть доставка в Казань?" in [t for _, _, t in await world.history(stranger)]
    assert "Есть доставка в Казань?" not in [t for _, _, t in await world.history(anna)]


async def test_a_vk_ref_brings_a_vk_user_into_the_telegram_customer(database: Database) -> None:
    world = World(database)
    await world.write("telegram", "777", "Хочу вернуть заказ", name="Пётр")
    petr = await world.owner("telegram", "777")
    token = _token((await world.links(petr))["vk"])
    await world.write("vk", "2002", "Привет", link_token=token)
    assert await world.owner("vk", "2002") == petr
    assert "продолжаем наш разговор" in (await world.told("vk", "2002"))[0]


async def test_an_email_to_the_tokenised_reply_address_links_the_sender(
    database: Database,
) -> None:
    world = World(database)
    anna = await world.anna()
    token = _token((await world.links(anna))["email"])
    await world.write("email", "anna.work@example.com", "Продолжим тут", link_token=token)
    assert await world.owner("email", "anna.work@example.com") == anna


async def test_the_prefilled_sms_links_the_number_it_came_from(database: Database) -> None:
    world = World(database)
    anna = await world.anna()
    sms = (await world.links(anna))["sms"]
    body = parse_qs(urlsplit(sms).query)["body"][0]
    await world.write("sms", "+79035556677", body)
    assert await world.owner("sms", "+79035556677") == anna


async def test_a_token_works_once(database: Database) -> None:
    world = World(database)
    anna = await world.anna()
    token = _token((await world.links(anna))["telegram"])
    await world.write("telegram", "555", "/start", link_token=token)
    await world.write("telegram", "666", "/start", link_token=token, name="Чужой")

    assert await world.owner("telegram", "555") == anna
    assert await world.owner("telegram", "666") != anna
    told = await world.told("telegram", "666")
    assert "ссылка уже не действует" in told[0]
    assert not any("Анна" in t or "заказ?" in t for t in told)


async def test_two_messages_racing_with_one_token_link_one_person(database: Database) -> None:
    world = World(database)
    anna = await world.anna()
    token = _token((await world.links(anna))["telegram"])
    await asyncio.gather(
        world.write("telegram", "555", "/start", link_token=token),
        world.write("telegram", "666", "/start", link_token=token),
    )
    owners = [await world.owner("telegram", a) for a in ("555", "666")]
    assert owners.count(anna) == 1


async def test_an_expired_token_proves_nothing(database: Database) -> None:
    world = World(database)
    anna = await world.anna()
    token = _token((await world.links(anna))["vk"])
    await world.clock.advance(world.linker.ttl.total_seconds() + 1)
    await world.write("vk", "3003", "Привет", link_token=token)
    assert await world.owner("vk", "3003") != anna
    told = await world.told("vk", "3003")
    assert "ссылка уже не действует" in told[0]
    assert any("Здравствуйте" in t for t in told)  # answered as the new person they are


async def test_an_unknown_token_proves_nothing_and_is_answered_normally(
    database: Database,
) -> None:
    world = World(database)
    anna = await world.anna()
    await world.write("telegram", "555", "/start", link_token="Zm9yZ2VkLXRva2VuLXh4eHg")
    assert await world.owner("telegram", "555") != anna
    told = await world.told("telegram", "555")
    assert "ссылка уже не действует" in told[0]
    assert any("Здравствуйте" in t for t in told)


async def test_an_email_reply_token_that_is_no_link_is_passed_over_silently(
    database: Database,
) -> None:
    world = World(database)
    await world.write("email", "someone@example.com", "Вопрос", link_token="c0ffee")
    assert not any("ссылка" in t for t in await world.told("email", "someone@example.com"))


# ------------------------------------------------------------------ contact button


async def test_telegrams_contact_button_with_a_known_phone_links(database: Database) -> None:
    world = World(database)
    anna = await world.anna()
    await world.write("telegram", "555", "Привет")
    await world.write("telegram", "555", "", verified_phone="79161234567")
    assert await world.owner("telegram", "555") == anna
    [merge] = await world.rows(Merge)
    assert merge.actor == "link:phone"


async def test_a_contact_button_with_an_unknown_phone_becomes_the_customers_phone(
    database: Database,
) -> None:
    world = World(database)
    await world.anna()
    await world.write("telegram", "555", "", verified_phone="+79035550000")
    async with database.session() as s:
        customer = await Customers(s).get(await world.owner("telegram", "555"))
        assert customer.phone == "+79035550000"


# ------------------------------------------------------------------ typed claims and codes


async def _types_phone(world: World, address: str, phone: str) -> list[str]:
    """The telegram user asks to leave a phone and types `phone`; what they are told."""
    await world.write("telegram", address, "Привет")
    await world.write("telegram", address, "перезвоните мне")
    before = len(await world.told("telegram", address))
    await world.write("telegram", address, phone)
    return (await world.told("telegram", address))[before:]


async def test_a_stranger_typing_the_customers_phone_sees_nothing_of_them(
    database: Database,
) -> None:
    world = World(database)
    anna = await world.anna()
    told = await _types_phone(world, "666", "8 916 123-45-67")

    assert await world.owner("telegram", "666") != anna  # a claim links nothing
    everything = " ".join(await world.told("telegram", "666"))
    assert "Анна" not in everything
    assert "заказ?" not in everything
    assert any("Если этот номер ваш" in t for t in told)
    # The code went to the number, not to the one who typed it.
    assert re.search(r"\d{6}", " ".join(await world.told("sms", ANNA_PHONE)))
    assert not re.search(r"\b\d{6}\b", everything)

    # The same words for a number nobody has: nothing tells the two apart.
    other = await _types_phone(world, "667", "8 903 000-11-22")
    assert [t for t in other if "Если этот номер ваш" in t] == [
        t for t in told if "Если этот номер ваш" in t
    ]


async def test_the_right_code_typed_back_links_and_merges(database: Database) -> None:
    world = World(database)
    anna = await world.anna()
    await _types_phone(world, "555", "+7 916 123 45 67")
    code = _code(await world.told("sms", ANNA_PHONE))
    before = len(await world.told("telegram", "555"))
    await world.write("telegram", "555", code)

    assert await world.owner("telegram", "555") == anna
    [merge] = await world.rows(Merge)
    assert merge.actor == "link:code"
    after = (await world.told("telegram", "555"))[before:]
    assert len(after) == 1
    assert "продолжаем наш разговор" in after[0]
    [code_row] = [t for t in await world.rows(LinkToken) if t.purpose == "code"]
    assert code_row.used_at is not None
    assert code not in code_row.token_hash


async def test_a_wrong_code_counts_down_and_the_fifth_kills_it(database: Database) -> None:
    world = World(database)
    anna = await world.anna()
    await _types_phone(world, "555", ANNA_PHONE)
    code = _code(await world.told("sms", ANNA_PHONE))
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1):
        await world.write("telegram", "555", wrong)
        assert (await world.told("telegram", "555"))[
            -1
        ] == f"Код не подошёл. Осталось попыток: {left}."
    await world.write("telegram", "555", wrong)
    assert "слишком много попыток" in (await world.told("telegram", "555"))[-1]

    await world.write("telegram", "555", code)  # right, but too late
    assert await world.owner("telegram", "555") != anna
    assert await world.rows(Merge) == []


async def test_an_expired_code_proves_nothing(database: Database) -> None:
    world = World(database)
    anna = await world.anna()
    await _types_phone(world, "555", ANNA_PHONE)
    code = _code(await world.told("sms", ANNA_PHONE))
    await world.clock.advance(10 * 60 + 1)
    await world.write("telegram", "555", code)
    assert await world.owner("telegram", "555") != anna
    assert "Срок действия кода истёк" in (await world.told("telegram", "555"))[-1]


async def test_a_typed_email_earns_a_code_to_that_address_which_links(
    database: Database,
) -> None:
    world = World(database)
    anna = await world.anna()
    await world.write("telegram", "555", "Привет")
    await world.write("telegram", "555", "я уже писала вам")
    before = len(await world.told("telegram", "555"))
    await world.write("telegram", "555", "Anna@Example.ru")
    told = (await world.told("telegram", "555"))[before:]
    assert any("Если этот адрес ваш" in t for t in told)
    assert not any("Анна" in t for t in await world.told("telegram", "555"))
    assert await world.owner("telegram", "555") != anna

    code = _code(await world.told("email", ANNA_EMAIL))
    await world.write("telegram", "555", code)
    assert await world.owner("telegram", "555") == anna


async def test_a_redelivered_wrong_code_counts_once(database: Database) -> None:
    world = World(database)
    await world.anna()
    await _types_phone(world, "555", ANNA_PHONE)
    code = _code(await world.told("sms", ANNA_PHONE))
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    await world.write("telegram", "555", wrong, external_id="tg-wrong")
    await world.write("telegram", "555", wrong, external_id="tg-wrong")  # the platform again
    await world.write("telegram", "555", wrong)
    assert (await world.told("telegram", "555"))[-1].endswith("Осталось попыток: 3.")
