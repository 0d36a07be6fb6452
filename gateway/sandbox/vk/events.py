"""Event objects as VK sends them over Bots Long Poll and the Callback API."""

from __future__ import annotations

import secrets
from typing import Any

from gateway.sandbox.vk.limits import version_at_least
from gateway.sandbox.vk.state import Community, Message

CLIENT_INFO: dict[str, Any] = {
    "button_actions": [
        "text",
        "vkpay",
        "open_app",
        "location",
        "open_link",
        "callback",
        "intent_subscribe",
        "intent_unsubscribe",
    ],
    "keyboard": True,
    "inline_keyboard": True,
    "carousel": True,
    "lang_id": 0,
}


def new_event_id() -> str:
    """Envelope ids look like a SHA-1 hex digest in real traffic."""
    return secrets.token_hex(20)


def message_object(message: Message) -> dict[str, Any]:
    """A Message object as VK serialises it inside events."""
    obj: dict[str, Any] = {
        "date": message.date,
        "from_id": message.from_id,
        "id": message.message_id,
        "out": int(message.out),
        "attachments": list(message.attachments),
        "conversation_message_id": message.conversation_message_id,
        "fwd_messages": [],
        "important": False,
        "is_hidden": False,
        "peer_id": message.peer_id,
        "random_id": message.random_id,
        "text": message.text,
    }
    if message.payload is not None:
        obj["payload"] = message.payload
    if message.ref is not None:
        obj["ref"] = message.ref
        if message.ref_source is not None:
            obj["ref_source"] = message.ref_source
    if message.out and message.keyboard is not None:
        obj["keyboard"] = message.keyboard
    return obj


def message_new_object(
    community: Community, message: Message, new_shape_from: str
) -> dict[str, Any]:
    """Since API 5.103 message_new wraps the message with client_info; before, it *was* it."""
    if version_at_least(community.events_version, new_shape_from):
        return {"message": message_object(message), "client_info": dict(CLIENT_INFO)}
    return message_object(message)


def envelope(community: Community, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The outer event; `secret` is added per delivery by the Callback API sender."""
    return {
        "group_id": community.group_id,
        "type": event_type,
        "event_id": new_event_id(),
        "v": community.events_version,
        "object": obj,
    }
