"""/stop and /start in Telegram and VK: the messenger counterpart of SMS STOP/START.

/stop withdraws marketing AND transactional messages on that channel (the person
asked the bot to be quiet); /start after a /stop restores both. A plain /start
from someone who never stopped is the usual greeting and is left to the dialog.
Each is confirmed in the chat, whoever owns the conversation.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway.channels import Inbound
from storage.customers import ConsentIn, Customers
from storage.models import Consent

__all__ = ["COMMAND_CHANNELS", "COMMAND_REPLIES", "apply_stop_command", "stop_command"]

COMMAND_CHANNELS = frozenset({"telegram", "vk"})
COMMAND_REPLIES = {
    "stop": (
        "Вы отписались: больше не пришлём сюда ни рассылок, ни уведомлений. "
        "Чтобы снова получать их, отправьте /start."
    ),
    "start": "Вы снова подписаны на рассылки и уведомления. Чтобы отписаться, отправьте /stop.",
}


def _command(text: str) -> str:
    word = text.strip().split(maxsplit=1)[0].lower() if text.strip() else ""
    return word.split("@", 1)[0]  # "/stop@shop_bot" in groups and some clients


async def stop_command(session: AsyncSession, message: Inbound, customer_id: int) -> str | None:
    """The command ("stop" or "start") this message is, or None."""
    if message.channel not in COMMAND_CHANNELS or message.button is not None:
        return None
    command = _command(message.text)
    if command == "/stop":
        return "stop"
    if command == "/start" and message.link_token is None:
        stopped = await session.scalar(
            sa.select(col(Consent.granted)).where(
                col(Consent.customer_id) == customer_id,
                col(Consent.channel) == message.channel,
                col(Consent.purpose) == "transactional",
            )
        )
        return "start" if stopped is False else None
    return None


async def apply_stop_command(
    session: AsyncSession, customer_id: int, channel: str, keyword: str
) -> str:
    """Record the transactional half of the answer (marketing is the router's); the reply."""
    await Customers(session).set_consent(
        customer_id,
        ConsentIn(
            channel=channel,
            purpose="transactional",
            granted=keyword == "start",
            source=f"{channel} /{keyword}",
        ),
    )
    return COMMAND_REPLIES[keyword]
