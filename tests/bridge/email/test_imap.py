"""gateway/bridge/email/imap.py + imap_client.py against a real Dovecot on loopback."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlmodel import col

from gateway.bridge.email.imap import FAILED_FLAG, ImapPoller
from gateway.bridge.email.imap_client import parse_imap_url
from gateway.bridge.email.inbound import EmailEvents
from gateway.bridge.email.threads import MailThreads
from gateway.channels import Inbound
from gateway.router import Router
from storage.cursors import Cursors
from storage.db import Database
from storage.models import Conversation, Identity, Message
from tests.bridge.email.dovecot import Dovecot
from tests.fakes import RecordingSink

T = TypeVar("T")
ACCOUNT = "support@shop.test"
DOMAIN = "shop.test"
SECRET = "imap-test-secret"
CORPUS = Path(__file__).parent / "corpus"


def mail(number: int, sender: str = "anna@mail.test", text: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = f"Анна <{sender}>"
    message["To"] = ACCOUNT
    message["Subject"] = f"Вопрос {number}"
    message["Message-ID"] = f"<q{number}.{sender}>"
    message.set_content(text or f"Вопрос номер {number}: когда доставка?")
    return message.as_bytes()


async def until(probe: Callable[[], Awaitable[T | None]], within: float = 20.0) -> T:
    """Await `probe` until it returns something truthy; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


async def state(poller: ImapPoller, wanted: str) -> None:
    async def probe() -> bool:
        return poller.state == wanted

    await until(probe)


@asynccontextmanager
async def polling(
    server: Dovecot, events: Any, db: Database, folder: str = "INBOX", **options: Any
) -> AsyncIterator[ImapPoller]:
    options = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "timeout_s": 5.0, **options}
    poller = ImapPoller(server.url(folder), events, Cursors(db), **options)
    await poller.start()
    try:
        yield poller
    finally:
        await poller.aclose()


def routed(db: Database) -> EmailEvents:
    """The real path: EmailEvents into the router and the store."""
    return EmailEvents(
        Router(db),
        ACCOUNT,
        domain=DOMAIN,
        verp_secret=SECRET,
        threads=MailThreads(db, ACCOUNT),
    )


def recorded(sink: RecordingSink) -> EmailEvents:
    return EmailEvents(sink, ACCOUNT, domain=DOMAIN, verp_secret=SECRET)


async def stored(db: Database) -> list[Message]:
    async with db.session() as session:
        return list(await session.scalars(sa.select(Message).order_by(col(Message.id))))


async def conversation_of(db: Database, address: str) -> int:
    async with db.session() as session:
        identity = await session.scalar(sa.select(Identity).where(Identity.address == address))
        assert identity is not None
        conversation = await session.scalar(
            sa.select(Conversation).where(Conversation.customer_id == identity.customer_id)
        )
    assert conversation is not None
    assert conversation.id is not None
    return conversation.id


async def test_mail_lands_in_the_customers_conversation_and_idle_brings_new_mail(
    database: Database, dovecot: Dovecot
) -> None:
    await dovecot.append(mail(1))
    await dovecot.append((CORPUS / "thunderbird_koi8r.eml").read_bytes())
    async with polling(dovecot, routed(database), database) as poller:
        await until(lambda: _count(database, 2))
        await state(poller, "idle")
        # Written while the poller IDLEs: the server's push brings it in.
        await dovecot.append(mail(2))
        messages = await until(lambda: _at_least(database, 3))

    anna = await conversation_of(database, "anna@mail.test")
    sergey = await conversation_of(database, "sergey@yandex.test")
    assert anna != sergey
    texts = {(m.conversation_id, m.text) for m in messages}
    assert (anna, "Вопрос номер 1: когда доставка?") in texts
    assert (anna, "Вопрос номер 2: когда доставка?") in texts
    koi8 = next(m for m in messages if m.conversation_id == sergey)
    assert koi8.text.startswith("Добрый вечер. Размер M подойдёт")
    assert koi8.external_id == "<8f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8@yandex.test>"
    assert all(m.channel == "email" and m.direction == "in" for m in messages)
    # Read with BODY.PEEK: the mailbox's people still see the mail as unread.
    assert "\\Seen" not in await dovecot.flags(1)


async def _count(db: Database, n: int) -> bool:
    return len(await stored(db)) == n


async def _at_least(db: Database, n: int) -> list[Message] | None:
    found = await stored(db)
    return found if len(found) >= n else None


async def test_idle_is_renewed_and_still_hears_new_mail(
    sqlite_database: Database, dovecot: Dovecot
) -> None:
    sink = RecordingSink()
    async with polling(dovecot, recorded(sink), sqlite_database, idle_renew_s=0.2) as poller:

        async def renewed() -> bool:
            return poller.idle_rounds >= 3 and poller.state == "idle"

        await until(renewed)
        await dovecot.append(mail(1))
        await until(lambda: _inbounds(sink, 1))

    assert [m.external_id for m in sink.inbounds] == ["<q1.anna@mail.test>"]


async def test_a_restarted_poller_imports_nothing_twice_and_misses_nothing(
    sqlite_database: Database, dovecot: Dovecot
) -> None:
    # A fresh sink each run remembers nothing: only the cursor can prevent a re-import.
    first = RecordingSink()
    await dovecot.append(mail(1))
    await dovecot.append(mail(2))
    async with polling(dovecot, recorded(first), sqlite_database) as poller:
        await until(lambda: _inbounds(first, 2))
        await state(poller, "idle")
    uid = await dovecot.append(mail(3))  # arrives while nobody reads

    second = RecordingSink()
    async with polling(dovecot, recorded(second), sqlite_database) as poller:
        await until(lambda: _inbounds(second, 1))
        await state(poller, "idle")

    assert [m.external_id for m in first.inbounds] == ["<q1.anna@mail.test>", "<q2.anna@mail.test>"]
    assert [m.external_id for m in second.inbounds] == ["<q3.anna@mail.test>"]
    saved = await Cursors(sqlite_database).load(poller.cursor_name)
    assert saved is not None
    assert saved.endswith(f":{uid}")


async def _inbounds(sink: RecordingSink, n: int) -> list[Inbound] | None:
    return sink.inbounds if len(sink.inbounds) >= n else None


async def test_polling_mode_reads_new_mail_without_idle(
    sqlite_database: Database, dovecot: Dovecot
) -> None:
    sink = RecordingSink()
    async with polling(
        dovecot, recorded(sink), sqlite_database, idle=False, poll_interval_s=0.2
    ) as poller:
        await state(poller, "polling")
        await dovecot.append(mail(1))
        await until(lambda: _inbounds(sink, 1))
        await dovecot.append(mail(2))
        await until(lambda: _inbounds(sink, 2))
        assert poller.state in {"polling", "reading"}

    assert [m.text for m in sink.inbounds] == [
        "Вопрос номер 1: когда доставка?",
        "Вопрос номер 2: когда доставка?",
    ]


async def test_a_rebuilt_mailbox_is_read_again_without_doubles(
    database: Database, dovecot: Dovecot
) -> None:
    await dovecot.append(mail(1), "Support")
    await dovecot.append(mail(2), "Support")
    async with polling(dovecot, routed(database), database, "Support") as poller:
        await until(lambda: _count(database, 2))
        await state(poller, "idle")

    # The server was migrated: same messages, new UIDs, a new UIDVALIDITY; and one more.
    await dovecot.rebuild("Support")
    for number in (1, 2, 3):
        await dovecot.append(mail(number), "Support")
    async with polling(dovecot, routed(database), database, "Support") as poller:
        await until(lambda: _count(database, 3))
        await state(poller, "idle")

    assert sorted(m.external_id or "" for m in await stored(database)) == [
        "<q1.anna@mail.test>",
        "<q2.anna@mail.test>",
        "<q3.anna@mail.test>",
    ]


async def test_a_lost_connection_is_made_again(sqlite_database: Database, dovecot: Dovecot) -> None:
    sink = RecordingSink()
    async with polling(dovecot, recorded(sink), sqlite_database) as poller:
        await state(poller, "idle")
        await asyncio.to_thread(dovecot.stop)
        await state(poller, "waiting")
        await asyncio.to_thread(dovecot.start)
        await dovecot.append(mail(1))
        await until(lambda: _inbounds(sink, 1))

    assert [m.external_id for m in sink.inbounds] == ["<q1.anna@mail.test>"]


class Poisoned(RecordingSink):
    """The store answers, but one message always breaks its import."""

    async def inbound(self, message: Inbound) -> None:
        if message.external_id == "<q2.anna@mail.test>":
            raise ValueError("this message cannot be stored")
        await super().inbound(message)


async def test_a_message_that_keeps_failing_is_flagged_and_does_not_block_the_next(
    sqlite_database: Database, dovecot: Dovecot
) -> None:
    sink = Poisoned()
    await dovecot.append(mail(1))
    bad = await dovecot.append(mail(2))
    await dovecot.append(mail(3))
    async with polling(dovecot, recorded(sink), sqlite_database, max_attempts=2) as poller:
        await until(lambda: _inbounds(sink, 2))
        assert poller.failed_uids == [bad]

    assert [m.external_id for m in sink.inbounds] == ["<q1.anna@mail.test>", "<q3.anna@mail.test>"]
    # Kept on the server, untouched but for our flag, for a person to look at.
    assert FAILED_FLAG in await dovecot.flags(bad)


class Outage(RecordingSink):
    """A store that is down, until the test brings it back."""

    down = True
    refused = 0

    async def inbound(self, message: Inbound) -> None:
        if self.down:
            self.refused += 1
            raise ConnectionRefusedError("the store is down")
        await super().inbound(message)


class ProbedEvents(EmailEvents):
    def __init__(self, sink: Outage) -> None:
        super().__init__(sink, ACCOUNT, domain=DOMAIN, verp_secret=SECRET)
        self.outage = sink

    async def store_reachable(self) -> bool:
        return not self.outage.down


async def test_a_store_outage_skips_nothing(sqlite_database: Database, dovecot: Dovecot) -> None:
    sink = Outage()
    await dovecot.append(mail(1))
    await dovecot.append(mail(2))
    async with polling(dovecot, ProbedEvents(sink), sqlite_database, max_attempts=1) as poller:
        await until(lambda: _refused(sink, 3))  # well past max_attempts
        sink.down = False
        await until(lambda: _inbounds(sink, 2))
        assert poller.failed_uids == []

    assert [m.external_id for m in sink.inbounds] == ["<q1.anna@mail.test>", "<q2.anna@mail.test>"]


async def _refused(sink: Outage, n: int) -> bool:
    return sink.refused >= n


async def test_starttls_and_imaps(sqlite_database: Database, dovecot_tls: Dovecot) -> None:
    assert dovecot_tls.cert is not None
    trust = ssl.create_default_context(cafile=str(dovecot_tls.cert))
    await dovecot_tls.append(mail(1))
    for scheme in ("imap", "imap+starttls", "imaps"):
        sink = RecordingSink()
        poller = ImapPoller(
            dovecot_tls.url(scheme=scheme),
            recorded(sink),
            Cursors(sqlite_database),
            ssl_context=trust,
            timeout_s=5.0,
        )
        poller.cursor_name += f"/{scheme}"  # each reads the folder from the start
        await poller.start()
        try:
            await until(lambda sink=sink: _inbounds(sink, 1))  # type: ignore[misc]
        finally:
            await poller.aclose()
        assert [m.external_id for m in sink.inbounds] == ["<q1.anna@mail.test>"], scheme


async def test_starttls_with_an_untrusted_certificate_imports_nothing(
    sqlite_database: Database, dovecot_tls: Dovecot
) -> None:
    sink = RecordingSink()
    await dovecot_tls.append(mail(1))
    poller = ImapPoller(
        dovecot_tls.url(), recorded(sink), Cursors(sqlite_database), reconnect_min_s=0.1
    )
    await poller.start()
    try:
        await state(poller, "waiting")  # the handshake failed: no login in the clear
    finally:
        await poller.aclose()
    assert sink.inbounds == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "imaps://u%40x:p%3As@mail.test/INBOX",
            ("mail.test", 993, "u@x", "p:s", "INBOX", True, False),
        ),
        ("imap://u:p@mail.test", ("mail.test", 143, "u", "p", "INBOX", False, None)),
        (
            "imap+starttls://u:p@mail.test:1143/Support%20Mail",
            ("mail.test", 1143, "u", "p", "Support Mail", False, True),
        ),
    ],
)
def test_parse_imap_url(url: str, expected: tuple[object, ...]) -> None:
    box = parse_imap_url(url)
    got = (box.host, box.port, box.username, box.password, box.folder, box.use_tls, box.start_tls)
    assert got == expected


@pytest.mark.parametrize(
    "url", ["http://u:p@mail.test", "imaps://mail.test", "imaps://u:p@", "imap://u:p@h:port"]
)
def test_parse_imap_url_refuses_malformed(url: str) -> None:
    with pytest.raises(ValueError, match="imap url"):
        parse_imap_url(url)
