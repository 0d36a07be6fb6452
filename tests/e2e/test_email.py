"""A customer writes to the shop's mailbox and gets the bot's answer by email."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest
import sqlalchemy as sa
from sqlmodel import col

from gateway.app import App
from gateway.config import SettingsError, load_settings
from storage.models import Identity, Message
from tests.bridge.email.dovecot import Dovecot
from tests.conftest import free_port
from tests.e2e.conftest import eventually
from tests.fakes import FakeRelay, relay_server


@asynccontextmanager
async def _mail_app(tmp_path: Path, **mail: str) -> AsyncIterator[App]:
    """chatgate (not the sandbox) answering support@shop.example, with `mail` settings added."""
    app = App(
        load_settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'mail.db'}",
            http_port=free_port(),
            sandbox=False,
            api_key="k",
            email_address="support@shop.example",
            email_secret="mail-secret",
            **mail,
        )
    )
    await app.start()
    try:
        yield app
    finally:
        await app.aclose()


def _question(sender: str, message_id: str, text: str) -> EmailMessage:
    """Мария asks the shop about delivery."""
    question = EmailMessage()
    question["From"] = sender
    question["To"] = "support@shop.example"
    question["Subject"] = "Доставка"
    question["Message-ID"] = message_id
    question.set_content(text)
    return question


async def test_a_mailed_question_is_stored_and_answered_by_mail(tmp_path: Path) -> None:
    async with relay_server() as relay:
        await _ask_and_get_answer(tmp_path, relay)


async def _ask_and_get_answer(tmp_path: Path, relay: FakeRelay) -> None:
    mx_port = free_port()
    async with _mail_app(
        tmp_path,
        smtp_url=f"smtp://127.0.0.1:{relay.port}",
        smtp_listen=f"127.0.0.1:{mx_port}",
    ) as app:
        question = _question(
            "Мария <Maria@Example.org>",
            "<q1@example.org>",
            "Здравствуйте! Сколько идёт доставка?\n\n-- \nМария",
        )
        await aiosmtplib.send(question, hostname="127.0.0.1", port=mx_port)

        await eventually(lambda: relay.received, within=20)
        answer = relay.received[0]
        assert answer.rcpt_tos == ["maria@example.org"]
        assert answer.mail_from.startswith("bounce+")  # VERP: bounces find their delivery
        parsed = email.message_from_bytes(answer.content, policy=default)
        assert parsed["From"].addresses[0].addr_spec == "support@shop.example"
        body = parsed.get_body(preferencelist=("plain",))
        assert body is not None
        assert "Здравствуйте" in body.get_content()

        async with app.db.session() as session:
            stored = list(await session.scalars(sa.select(Message).order_by(col(Message.id))))
            identity = await session.scalar(sa.select(Identity))
        assert stored[0].channel == "email"
        assert stored[0].direction == "in"
        assert stored[0].text == "Здравствуйте! Сколько идёт доставка?"  # signature stripped
        assert identity is not None
        assert identity.address == "maria@example.org"
        assert any(m.direction == "out" and m.channel == "email" for m in stored)


async def test_marketing_unsubscribe_link_is_served_by_the_app(tmp_path: Path) -> None:
    from gateway.bridge.email import unsubscribe_token

    async with (
        _mail_app(tmp_path, smtp_listen=f"127.0.0.1:{free_port()}") as app,
        aiohttp.ClientSession() as http,
    ):
        token = unsubscribe_token(12345, "mail-secret")
        async with http.get(f"{app.url}/unsubscribe/{token}") as response:
            assert response.status == 404  # signed, but no such delivery
        async with http.get(f"{app.url}/t/o/garbage") as response:
            assert response.status == 200
            assert response.content_type == "image/gif"


async def test_mail_read_over_imap_is_answered_and_the_reply_comes_back_by_token(
    tmp_path: Path,
) -> None:
    server = Dovecot(free_port(), free_port())
    server.start()
    try:
        async with relay_server() as relay:
            await _imap_round_trip(tmp_path, server, relay)
    finally:
        server.cleanup()


async def _imap_round_trip(tmp_path: Path, server: Dovecot, relay: FakeRelay) -> None:
    async with _mail_app(
        tmp_path, smtp_url=f"smtp://127.0.0.1:{relay.port}", imap_url=server.url()
    ) as app:
        question = _question(
            "Мария <maria@example.org>",
            "<imap-q1@example.org>",
            "Здравствуйте! Сколько идёт доставка?",
        )
        await server.append(question.as_bytes())

        await eventually(lambda: relay.received, within=20)
        answer = email.message_from_bytes(relay.received[0].content, policy=default)
        reply_to = answer["Reply-To"].addresses[0].addr_spec
        assert reply_to.startswith("reply+")
        assert answer["In-Reply-To"] == "<imap-q1@example.org>"

        reply = EmailMessage()
        reply["From"] = "maria@example.org"
        reply["To"] = reply_to
        reply["Subject"] = "Re: Доставка"
        reply["Message-ID"] = "<imap-r1@example.org>"
        reply["In-Reply-To"] = answer["Message-ID"]
        reply.set_content("Спасибо!\n\n> Здравствуйте! Сколько идёт доставка?")
        await server.append(reply.as_bytes())

        async def arrived() -> list[Message] | None:
            async with app.db.session() as session:
                rows = list(
                    await session.scalars(sa.select(Message).where(col(Message.direction) == "in"))
                )
            return rows if len(rows) == 2 else None

        deadline = asyncio.get_running_loop().time() + 20
        while (inbound := await arrived()) is None:
            assert asyncio.get_running_loop().time() < deadline, "the reply never arrived"
            await asyncio.sleep(0.05)
        assert inbound[1].conversation_id == inbound[0].conversation_id
        assert inbound[1].text == "Спасибо!"
        assert inbound[1].meta["matched_by"] == "reply_token"


def test_a_malformed_imap_url_stops_the_start_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match="CHATGATE_IMAP_URL"):
        load_settings(
            sandbox=False,
            email_address="support@shop.example",
            email_secret="s",
            imap_url="imaps://no-password@mail.example/INBOX",
        )
