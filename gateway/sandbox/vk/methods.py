"""The VK API methods the emulator implements, in the shapes vkbottle 4 parses."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.sandbox.vk.errors import VKError, invalid_param
from gateway.sandbox.vk.keyboard import parse_keyboard
from gateway.sandbox.vk.limits import version_at_least
from gateway.sandbox.vk.state import CallbackServer, Community, Message

if TYPE_CHECKING:
    from gateway.sandbox.vk.emulator import VKEmulator

CHAT_PEER_BASE = 2_000_000_000
_NOT_EVENT_FLAGS = frozenset({"access_token", "v", "group_id", "server_id", "api_version"})


@dataclass(frozen=True, slots=True)
class Call:
    emulator: VKEmulator
    community: Community
    params: dict[str, str]
    version: str
    base_url: str

    def get(self, name: str) -> str | None:
        value = self.params.get(name)
        return value if value not in (None, "") else None

    def int_param(self, name: str, *, required: bool = False) -> int | None:
        raw = self.get(name)
        if raw is None:
            if required:
                raise invalid_param(f"{name} is a required parameter")
            return None
        try:
            return int(raw)
        except ValueError:
            raise invalid_param(f"{name} not integer") from None

    def int_list(self, name: str) -> list[int]:
        raw = self.get(name)
        if raw is None:
            return []
        try:
            return [int(part) for part in raw.split(",") if part.strip()]
        except ValueError:
            raise invalid_param(f"{name} should be a list of integers") from None


# -- messages ---------------------------------------------------------------------


def _send_one(
    call: Call, peer_id: int, text: str, random_id: int, extra: dict[str, Any]
) -> Message:
    emu, community = call.emulator, call.community
    if peer_id >= CHAT_PEER_BASE or peer_id < 0:
        raise VKError(917, "chats and communities are not emulated")
    if not emu.store.can_write(community.group_id, peer_id):
        raise VKError(901)
    dialog = emu.store.dialog(community.group_id, peer_id)
    now = emu.clock()
    if random_id:
        seen = dialog.random_ids.get(random_id)
        if seen is not None and now - seen[1] < emu.limits.random_id_window:
            return seen[0]
    if emu.faults.take_flood(peer_id):
        raise VKError(9)
    limit = emu.limits.identical_messages_per_peer
    run_text, run_count = dialog.same_text_run
    if limit is not None and text and text == run_text and run_count >= limit:
        raise VKError(9)
    message = Message(
        message_id=emu.store.next_message_id(community.group_id),
        conversation_message_id=dialog.next_cmid(),
        peer_id=peer_id,
        from_id=-community.group_id,
        text=text,
        date=int(now),
        out=True,
        random_id=random_id,
        **extra,
    )
    dialog.messages.append(message)
    dialog.same_text_run = (text, run_count + 1 if text == run_text else 1)
    if random_id:
        dialog.random_ids[random_id] = (message, now)
    emu.echo_reply(community, message)
    return message


def messages_send(call: Call) -> Any:
    peer_ids = call.int_list("peer_ids")
    single = call.int_param("peer_id") or call.int_param("user_id")
    if not peer_ids and single is None:
        raise invalid_param(
            "you should specify peer_id, user_id, domain, chat_id or user_ids param"
        )
    random_id = (
        call.int_param(
            "random_id",
            required=version_at_least(call.version, call.emulator.limits.min_random_id_version),
        )
        or 0
    )
    text = call.params.get("message", "")
    attachment = call.get("attachment")
    if not text and attachment is None and call.get("sticker_id") is None:
        raise invalid_param("message is empty or invalid")
    if len(text) > call.emulator.limits.max_message_length:
        raise VKError(914)
    raw_keyboard = call.get("keyboard")
    extra: dict[str, Any] = {
        "keyboard": parse_keyboard(raw_keyboard) if raw_keyboard is not None else None,
        "attachments": [a.strip() for a in (attachment or "").split(",") if a.strip()],
        "payload": call.get("payload"),
        "params": {k: v for k, v in call.params.items() if k != "access_token"},
    }
    if not peer_ids:
        assert single is not None
        return _send_one(call, single, text, random_id, extra).message_id
    results: list[dict[str, Any]] = []
    for peer_id in peer_ids:
        try:
            message = _send_one(call, peer_id, text, random_id, extra)
        except VKError as exc:
            # VK reports per-peer failures inside the list and omits message_id there.
            results.append(
                {"peer_id": peer_id, "error": {"code": exc.code, "description": exc.message}}
            )
            continue
        results.append(
            {
                "peer_id": peer_id,
                "message_id": message.message_id,
                "conversation_message_id": message.conversation_message_id,
            }
        )
    return results


def messages_send_message_event_answer(call: Call) -> int:
    event_id = call.get("event_id")
    if event_id is None:
        raise invalid_param("event_id is a required parameter")
    user_id = call.int_param("user_id", required=True)
    peer_id = call.int_param("peer_id", required=True)
    emu = call.emulator
    pending = emu.button_events.get(event_id)
    if (
        pending is None
        or pending.group_id != call.community.group_id
        or emu.clock() - pending.created_at > emu.limits.message_event_ttl
    ):
        raise invalid_param("event_id is invalid or expired")
    if (pending.user_id, pending.peer_id) != (user_id, peer_id):
        raise invalid_param("user_id or peer_id does not match the event")
    raw_data = call.get("event_data")
    try:
        data = json.loads(raw_data) if raw_data is not None else None
    except ValueError:
        raise invalid_param("event_data is not a valid JSON") from None
    emu.event_answers.append(
        {"event_id": event_id, "user_id": user_id, "peer_id": peer_id, "event_data": data}
    )
    return 1


def messages_get_conversations_by_id(call: Call) -> dict[str, Any]:
    store, group_id = call.emulator.store, call.community.group_id
    items: list[dict[str, Any]] = []
    for peer_id in call.int_list("peer_ids"):
        if peer_id not in store.users:
            continue
        dialog = store.dialog(group_id, peer_id)
        can_write: dict[str, Any] = {"allowed": dialog.allowed}
        if not dialog.allowed:
            can_write["reason"] = 901
        last_id = dialog.messages[-1].message_id if dialog.messages else 0
        items.append(
            {
                "peer": {"id": peer_id, "type": "user", "local_id": peer_id},
                "last_message_id": last_id,
                "last_conversation_message_id": dialog.last_cmid,
                "in_read": dialog.in_read,
                "out_read": dialog.out_read,
                "can_write": can_write,
            }
        )
    return {"count": len(items), "items": items}


# -- users and groups -----------------------------------------------------------------


def users_get(call: Call) -> list[dict[str, Any]]:
    store = call.emulator.store
    raw = call.get("user_ids") or call.get("user_id") or ""
    found: list[dict[str, Any]] = []
    for part in (p.strip().removeprefix("id") for p in raw.split(",") if p.strip()):
        user = store.users.get(int(part)) if part.isdigit() else None
        if user is not None:
            found.append(
                {
                    "id": user.user_id,
                    "first_name": user.first_name,
                    "last_name": user.last_name,
                    "can_access_closed": True,
                    "is_closed": False,
                }
            )
    return found


def _group_object(community: Community) -> dict[str, Any]:
    return {
        "id": community.group_id,
        "name": community.name,
        "screen_name": community.screen_name,
        "is_closed": 0,
        "type": "group",
        "photo_50": "https://vk.com/images/community_50.png",
        "photo_100": "https://vk.com/images/community_100.png",
        "photo_200": "https://vk.com/images/community_200.png",
    }


def groups_get_by_id(call: Call) -> Any:
    store = call.emulator.store
    raw = call.get("group_ids") or call.get("group_id")
    names: list[str | None] = [p for p in (raw or "").split(",") if p.strip()]
    groups = [_group_object(store.resolve_group(name, call.community)) for name in names or [None]]
    if version_at_least(call.version, call.emulator.limits.groups_object_version):
        return {"groups": groups, "profiles": []}
    return groups


def _own_group(call: Call) -> Community:
    group_id = call.int_param("group_id", required=True)
    if group_id != call.community.group_id:
        raise VKError(15, "no access to this community with this token")
    return call.community


def groups_get_long_poll_server(call: Call) -> dict[str, str]:
    community = _own_group(call)
    return call.emulator.longpoll.server(community.group_id, call.base_url)


def groups_set_long_poll_settings(call: Call) -> int:
    community = _own_group(call)
    if (version := call.get("api_version")) is not None:
        community.events_version = version
    return 1


def groups_get_callback_confirmation_code(call: Call) -> dict[str, str]:
    return {"code": _own_group(call).confirmation_code}


def _server_object(server: CallbackServer) -> dict[str, Any]:
    return {
        "id": server.server_id,
        "title": server.title,
        "creator_id": 0,
        "url": server.url,
        "secret_key": server.secret or "",
        "status": server.status,
    }


def groups_get_callback_servers(call: Call) -> dict[str, Any]:
    server = _own_group(call).callback
    items = [_server_object(server)] if server else []
    return {"count": len(items), "items": items}


def groups_add_callback_server(call: Call) -> dict[str, int]:
    community = _own_group(call)
    url = call.get("url")
    if url is None:
        raise invalid_param("url is a required parameter")
    previous = community.callback
    server_id = previous.server_id + 1 if previous else 1
    community.callback = CallbackServer(
        server_id, url, call.get("secret_key"), title=call.get("title") or "chatgate", events={}
    )
    return {"server_id": server_id}


def _own_server(call: Call) -> CallbackServer:
    server = _own_group(call).callback
    if server is None or server.server_id != call.int_param("server_id", required=True):
        raise invalid_param("server_id is invalid")
    return server


def groups_edit_callback_server(call: Call) -> int:
    server = _own_server(call)
    new_url = call.get("url") or server.url
    if new_url != server.url:
        server.status = "unconfigured"
    server.url = new_url
    server.title = call.get("title") or server.title
    server.secret = call.get("secret_key") or server.secret
    return 1


def groups_delete_callback_server(call: Call) -> int:
    _own_server(call)
    call.community.callback = None
    return 1


def groups_set_callback_settings(call: Call) -> int:
    server = _own_server(call)
    if (version := call.get("api_version")) is not None:
        call.community.events_version = version
    flags = {
        k: v == "1" for k, v in call.params.items() if k not in _NOT_EVENT_FLAGS and v in {"0", "1"}
    }
    server.events = {**(server.events or {}), **flags}
    return 1


def groups_get_callback_settings(call: Call) -> dict[str, Any]:
    server = _own_server(call)
    return {"api_version": call.community.events_version, "events": server.events or {}}


METHODS: dict[str, Callable[[Call], Any]] = {
    "messages.send": messages_send,
    "messages.sendMessageEventAnswer": messages_send_message_event_answer,
    "messages.getConversationsById": messages_get_conversations_by_id,
    "users.get": users_get,
    "groups.getById": groups_get_by_id,
    "groups.getLongPollServer": groups_get_long_poll_server,
    "groups.setLongPollSettings": groups_set_long_poll_settings,
    "groups.getCallbackConfirmationCode": groups_get_callback_confirmation_code,
    "groups.getCallbackServers": groups_get_callback_servers,
    "groups.addCallbackServer": groups_add_callback_server,
    "groups.editCallbackServer": groups_edit_callback_server,
    "groups.deleteCallbackServer": groups_delete_callback_server,
    "groups.setCallbackSettings": groups_set_callback_settings,
    "groups.getCallbackSettings": groups_get_callback_settings,
}
