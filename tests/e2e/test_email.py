"""A customer writes to the shop's mailbox and gets the bot's answer by email."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import aiohttp
import aiosmtplib
import sqlalchemy as sa
from sqlmodel import col

from gateway.app import App
from gateway.config import load_settings
from storage.models import Identity, Message
from tests.conftest import free_port
from tests.e2e.conftest import eventually
from tests.fakes import FakeRelay, relay_server


async def test_a_mailed_question_is_stored_and_answered_by_mail(tmp_path: Path) -> None:
    async with relay_server() as relay:
        await _ask_and_get_answer(tmp_path, relay)


async def _ask_and_get_answer(tmp_path: Path, relay: FakeRelay) -> None:
    mx_port = free_port()
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'mail.db'}",
        http_port=free_port(),
        sandbox=False,
        api_key="k",
        email_address="support@shop.example",
        email_secret="mail-secret",
        smtp_url=f"smtp://127.0.0.1:{relay.port}",
        smtp_listen=f"127.0.0.1:{mx_port}",
    )
    app = App(settings)
    await app.start()
    try:
        question = EmailMessage()
        question["From"] = "Мария <Maria@Example.org>"
        question["To"] = "support@shop.example"
        question["Subject"] = "Доставка"
        question["Message-ID"] = "<q1@example.org>"
        question.set_content("Здравствуйте! Сколько идёт доставка?\n\n-- \nМария")
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
    finally:
        await app.aclose()


async def test_marketing_unsubscribe_link_is_served_by_the_app(tmp_path: Path) -> None:
    from gateway.bridge.email import unsubscribe_token

    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'unsub.db'}",
        http_port=free_port(),
        sandbox=False,
        api_key="k",
        email_address="support@shop.example",
        email_secret="mail-secret",
        smtp_listen=f"127.0.0.1:{free_port()}",
    )
    app = App(settings)
    await app.start()
    try:
        async with aiohttp.ClientSession() as http:
            token = unsubscribe_token(12345, "mail-secret")
            async with http.get(f"{app.url}/unsubscribe/{token}") as response:
                assert response.status == 404  # signed, but no such delivery
            async with http.get(f"{app.url}/t/o/garbage") as response:
                assert response.status == 200
                assert response.content_type == "image/gif"
    finally:
        await app.aclose()
