"""A faithful in-memory VK API emulator that the real vkbottle client talks to over HTTP.

Point vkbottle at it with `api.API_URL = f"{base}/method/"`; Bots Long Poll then follows
the `server` URL that groups.getLongPollServer hands out, which points back here.
"""

from __future__ import annotations

from gateway.sandbox.vk.callback import DeliveryAttempt
from gateway.sandbox.vk.emulator import PendingButtonEvent, VKEmulator
from gateway.sandbox.vk.limits import VKLimits
from gateway.sandbox.vk.state import CallbackServer, Community, Message, User

__all__ = [
    "CallbackServer",
    "Community",
    "DeliveryAttempt",
    "Message",
    "PendingButtonEvent",
    "User",
    "VKEmulator",
    "VKLimits",
]
