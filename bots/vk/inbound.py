"""VK events (Callback API and Bots Long Poll alike) → Inbound, Signal, reachability.

Both transports deliver the same envelope `{type, object, group_id, event_id}`, so
one `VKEvents.process()` serves both; it also dedupes on `event_id`, which VK
repeats when a Callback API answer was not `ok` or after Long Poll `failed: 1`.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from vkbottle import API
from vkbottle.exception_factory import VKAPIError

from bots.vk.client import VKTransportError
from gateway.channels import Attachment, Inbound, Signal, Sink, UpdateKey
from gateway.once import Once

__all__ = ["CHAT_PEER_BASE", "VKEvents", "attachments_of", "button_of"]

log = logging.getLogger(__name__)

CHAT_PEER_BASE = 2_000_000_000  # peer ids from here on are group chats
_NAME_CACHE = 10_000

_KINDS = {"photo": "photo", "doc": "document", "audio_message": "voice", "sticker": "sticker"}


def _largest_url(items: Any, url_key: str = "url") -> str | None:
    """The URL of the biggest rendition in a `sizes`/`images` list."""
    if not isinstance(items, list):
        return None
    best = max(
        (i for i in items if isinstance(i, dict) and i.get(url_key)),
        key=lambda i: int(i.get("width") or 0) * int(i.get("height") or 0),
        default=None,
    )
    return str(best[url_key]) if best else None


def _media_id(kind: str, obj: Mapping[str, Any]) -> str | None:
    """VK's `photo-1_2_key` form, which messages.send accepts back as an attachment."""
    if "owner_id" not in obj or "id" not in obj:
        return None
    ident = f"{kind}{obj['owner_id']}_{obj['id']}"
    return f"{ident}_{obj['access_key']}" if obj.get("access_key") else ident


def _attachment(item: Mapping[str, Any]) -> Attachment | None:
    kind = str(item.get("type", ""))
    obj = item.get(kind)
    if not isinstance(obj, dict):
        return None
    if kind == "photo":
        return Attachment("photo", file_id=_media_id(kind, obj), url=_largest_url(obj.get("sizes")))
    if kind == "doc":
        size = obj.get("size")
        return Attachment(
            "document",
            file_id=_media_id(kind, obj),
            name=obj.get("title"),
            size=size if isinstance(size, int) else None,
            url=obj.get("url"),
        )
    if kind == "audio_message":
        ogg = obj.get("link_ogg")
        return Attachment(
            "voice",
            file_id=_media_id("doc", obj),
            mime="audio/ogg" if ogg else "audio/mpeg",
            url=ogg or obj.get("link_mp3"),
            data={"duration": obj["duration"]} if "duration" in obj else {},
        )
    if kind == "sticker":
        sticker_id = obj.get("sticker_id")
        return Attachment(
            "sticker",
            file_id=None if sticker_id is None else str(sticker_id),
            url=_largest_url(obj.get("images")),
        )
    # video, audio, wall, link, market, poll, ...: keep VK's kind and its reference.
    return Attachment(kind, file_id=_media_id(kind, obj))


def _location(geo: Any) -> Attachment | None:
    """The message's `geo` field; coordinates are an object, or "lat lon" in old versions."""
    if not isinstance(geo, dict):
        return None
    coords = geo.get("coordinates")
    try:
        if isinstance(coords, dict):
            lat, lon = float(coords["latitude"]), float(coords["longitude"])
        elif isinstance(coords, str):
            lat, lon = (float(part) for part in coords.split()[:2])
        else:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    data: dict[str, Any] = {"latitude": lat, "longitude": lon}
    place = geo.get("place")
    if isinstance(place, dict) and place.get("title"):
        data["title"] = place["title"]
    return Attachment("location", data=data)


def attachments_of(message: Mapping[str, Any]) -> tuple[Attachment, ...]:
    found = [
        a
        for item in message.get("attachments") or []
        if isinstance(item, dict) and (a := _attachment(item)) is not None
    ]
    if (place := _location(message.get("geo"))) is not None:
        found.append(place)
    return tuple(found)


def button_of(payload: Any) -> str | None:
    """The pressed button: our `{"button": …}`, VK's Start `{"command": …}`, or the raw value."""
    if payload is None or payload == "":
        return None
    value = payload
    if isinstance(payload, str):
        try:
            value = json.loads(payload)
        except ValueError:
            return payload
    if isinstance(value, dict):
        for key in ("button", "command"):
            if key in value and value[key] is not None:
                inner = value[key]
                return inner if isinstance(inner, str) else json.dumps(inner, ensure_ascii=False)
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _user_peer(value: Any) -> int | None:
    """A private dialog's peer id, or None for chats, communities and garbage."""
    try:
        peer = int(value)
    except (TypeError, ValueError):
        return None
    return peer if 0 < peer < CHAT_PEER_BASE else None


class VKEvents:
    """Maps one community's events onto the Sink; dedupes on event_id."""

    def __init__(self, api: API, group_id: int, sink: Sink) -> None:
        self._api = api
        self.group_id = group_id
        self.account = str(group_id)
        self.source = f"vk:{group_id}"
        self._sink = sink
        self._names: OrderedDict[int, str | None] = OrderedDict()
        self._once = Once(sink, self.source)

    async def process(self, event: Mapping[str, Any]) -> None:
        """Handle one envelope once; raises if handling failed, so the sender retries."""
        event_id = event.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            await self.dispatch(event)  # nothing to dedupe on (very old API versions)
            return
        if event.get("type") == "message_new":
            # The sink records the event with the message it stores: one transaction.
            await self._once.run_recording(event_id, lambda seen: self.dispatch(event, seen))
        else:
            await self._once.run(event_id, lambda: self.dispatch(event))

    async def dispatch(self, event: Mapping[str, Any], update: UpdateKey | None = None) -> None:
        """Route one envelope by type; unknown types and other communities are ignored.

        `update` goes with a new message to the sink, which records it (Once.run_recording).
        """
        group = event.get("group_id")
        if group is not None and str(group) != self.account:
            log.warning("vk.foreign_event", extra={"group": group, "ours": self.group_id})
            return
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        kind = event.get("type")
        if kind == "message_new":
            await self._message_new(obj, update)
        elif kind == "message_event":
            await self._message_event(obj)
        elif kind in ("message_allow", "message_deny"):
            peer = _user_peer(obj.get("user_id"))
            if peer is not None:
                await self._sink.reachability(
                    "vk", self.account, str(peer), reachable=kind == "message_allow", reason=kind
                )
        elif kind == "message_read":
            peer = _user_peer(obj.get("peer_id", obj.get("from_id")))
            if peer is not None and obj.get("read_message_id") is not None:
                await self._sink.signal(
                    Signal(
                        kind="read",
                        channel="vk",
                        account=self.account,
                        address=str(peer),
                        external_id=str(obj["read_message_id"]),
                    )
                )

    async def _message_new(self, obj: Mapping[str, Any], update: UpdateKey | None) -> None:
        # Since API 5.103 the message sits under "message" beside client_info.
        inner = obj.get("message")
        message: Mapping[str, Any] = inner if isinstance(inner, dict) else obj
        peer = _user_peer(message.get("peer_id", message.get("from_id")))
        if peer is None or message.get("out"):
            return  # group chats and our own messages are not customers talking
        # `id` is unique within the community and present in both shapes;
        # conversation_message_id only within one dialog.
        message_id = message.get("id")
        external_id = (
            str(message_id) if message_id else f"{peer}:{message.get('conversation_message_id')}"
        )
        date = message.get("date")
        meta: dict[str, Any] = {"conversation_message_id": message.get("conversation_message_id")}
        client_info = obj.get("client_info")
        if isinstance(client_info, dict) and "button_actions" in client_info:
            meta["button_actions"] = list(client_info["button_actions"])
        await self._sink.inbound(
            Inbound(
                channel="vk",
                account=self.account,
                address=str(peer),
                text=str(message.get("text") or ""),
                external_id=external_id,
                attachments=attachments_of(message),
                name=await self._name(peer),
                link_token=message.get("ref") or None,
                button=button_of(message.get("payload")),
                sent_at=datetime.fromtimestamp(date, UTC) if isinstance(date, int) else None,
                meta=meta,
                update=update,
            )
        )

    async def _message_event(self, obj: Mapping[str, Any]) -> None:
        peer = _user_peer(obj.get("peer_id"))
        user = _user_peer(obj.get("user_id"))
        event_id = obj.get("event_id")
        if peer is None or user is None or not event_id:
            return
        # Stop the spinner first: the press is only answerable for a minute. A failed
        # answer costs the person a spinner, not us the press, so it is not fatal.
        try:
            await self._api.request(
                "messages.sendMessageEventAnswer",
                {"event_id": event_id, "user_id": user, "peer_id": peer},
            )
        except (VKAPIError, VKTransportError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("vk.event_answer_failed", extra={"event": event_id, "why": str(exc)})
        await self._sink.inbound(
            Inbound(
                channel="vk",
                account=self.account,
                address=str(peer),
                external_id=f"event:{event_id}",
                name=await self._name(user),
                button=button_of(obj.get("payload")),
                meta={"conversation_message_id": obj.get("conversation_message_id")},
            )
        )

    async def _name(self, user_id: int) -> str | None:
        """First and last name from users.get, cached; None when VK can't say."""
        if user_id in self._names:
            self._names.move_to_end(user_id)
            return self._names[user_id]
        try:
            answer = await self._api.request("users.get", {"user_ids": user_id})
        except (VKAPIError, VKTransportError, aiohttp.ClientError, TimeoutError) as exc:
            log.info("vk.name_unknown", extra={"user": user_id, "why": str(exc)})
            return None  # not cached: try again next time
        people = answer.get("response") or []
        name = None
        if people and isinstance(people[0], dict):
            parts = (people[0].get("first_name"), people[0].get("last_name"))
            name = " ".join(p for p in parts if p) or None
        self._names[user_id] = name
        while len(self._names) > _NAME_CACHE:
            self._names.popitem(last=False)
        return name
