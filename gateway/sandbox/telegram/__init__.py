"""Telegram Bot API emulator for offline tests and the local sandbox (aiogram talks HTTP to it)."""

from __future__ import annotations

from gateway.sandbox.telegram.emulator import TelegramEmulator
from gateway.sandbox.telegram.errors import ApiError, ControlError
from gateway.sandbox.telegram.faults import Fault
from gateway.sandbox.telegram.limits import TelegramLimits
from gateway.sandbox.telegram.state import Account, BotAccount, Chat, StoredMessage, Topic
from gateway.sandbox.telegram.webhook import WebhookPolicy

__all__ = [
    "Account",
    "ApiError",
    "BotAccount",
    "Chat",
    "ControlError",
    "Fault",
    "StoredMessage",
    "TelegramEmulator",
    "TelegramLimits",
    "Topic",
    "WebhookPolicy",
]
