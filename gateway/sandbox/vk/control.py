"""`/control/...`: JSON endpoints that play the user and inspect the emulator over HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from gateway.sandbox.vk.emulator import VKEmulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Action = Callable[["VKEmulator", web.Request, dict[str, Any]], Any]


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='{"error": "a JSON object is expected"}')
    return data


def _json_endpoint(emulator: VKEmulator, action: Action) -> Handler:
    """Run an action with the JSON body; unknown ids are 404, bad input 400."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        try:
            result = action(emulator, request, body)
            if isinstance(result, Awaitable):
                result = await result
        except KeyError as exc:
            return web.json_response({"error": str(exc.args[0])}, status=404)
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True} if result is None else result)

    return handler


def _uid(request: web.Request) -> int:
    return int(request.match_info["user_id"])


def _group(request: web.Request, body: dict[str, Any]) -> int | None:
    raw = body.get("group_id", request.query.get("group_id"))
    return None if raw is None else int(raw)


def _add_community(emu: VKEmulator, _r: web.Request, b: dict[str, Any]) -> Any:
    community = emu.add_community(
        int(b["group_id"]),
        str(b.get("name", f"Community {b['group_id']}")),
        screen_name=b.get("screen_name"),
        token=b.get("token"),
        confirmation_code=b.get("confirmation_code"),
    )
    return {"group_id": community.group_id, "tokens": sorted(community.tokens)}


def _add_user(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    user = emu.add_user(
        b.get("user_id"),
        b.get("first_name", "Test"),
        b.get("last_name", "User"),
        allowed=bool(b.get("allowed", False)),
        group_id=_group(r, b),
    )
    return {"id": user.user_id, "first_name": user.first_name, "last_name": user.last_name}


def _user_writes(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    message = emu.user_writes(
        _uid(r),
        b.get("text", ""),
        payload=b.get("payload"),
        ref=b.get("ref"),
        ref_source=b.get("ref_source"),
        attachments=b.get("attachments"),
        group_id=_group(r, b),
    )
    return message.as_dict()


def _press(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    event_id = emu.press_callback_button(
        _uid(r),
        b.get("payload"),
        conversation_message_id=b.get("conversation_message_id"),
        group_id=_group(r, b),
    )
    return {"event_id": event_id}


def _allow(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    emu.allow_messages(_uid(r), b.get("key"), group_id=_group(r, b))


def _deny(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    emu.deny_messages(_uid(r), group_id=_group(r, b))


def _read(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    return {"read_message_id": emu.user_reads(_uid(r), b.get("message_id"), group_id=_group(r, b))}


def _sent(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    peer_id = int(r.match_info["peer_id"])
    return {"items": [m.as_dict() for m in emu.sent_to(peer_id, group_id=_group(r, b))]}


def _dialog(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    peer_id = int(r.match_info["peer_id"])
    return {"items": [m.as_dict() for m in emu.dialog_messages(peer_id, group_id=_group(r, b))]}


def _stats(emu: VKEmulator, _r: web.Request, _b: dict[str, Any]) -> Any:
    return {**emu.stats.as_dict(), "event_answers": emu.event_answers}


def _fault(emu: VKEmulator, _r: web.Request, b: dict[str, Any]) -> Any:
    emu.fail_next(
        str(b["method"]),
        int(b.get("times", 1)),
        error_code=b.get("error_code"),
        error_msg=b.get("error_msg"),
        http_status=b.get("http_status"),
        drop=bool(b.get("drop", False)),
    )


def _flood(emu: VKEmulator, _r: web.Request, b: dict[str, Any]) -> Any:
    emu.flood_next(b.get("peer_id"), int(b.get("times", 1)))


def _expire_key(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    emu.expire_longpoll_key(_group(r, b))


def _lose_history(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    emu.lose_longpoll_history(_group(r, b))


def _set_callback(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    server = emu.set_callback(
        str(b["url"]),
        b.get("secret"),
        b.get("confirmation_code"),
        group_id=_group(r, b),
        events=b.get("events"),
    )
    return {
        "server_id": server.server_id,
        "confirmation_code": emu.community(_group(r, b)).confirmation_code,
    }


async def _confirm(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    return {"confirmed": await emu.confirm_callback(_group(r, b))}


async def _attempts(emu: VKEmulator, r: web.Request, _b: dict[str, Any]) -> Any:
    if r.query.get("drain") == "1":
        await emu.callback_drain()
    return {"items": [a.as_dict() for a in emu.callback_attempts(r.query.get("event_id"))]}


def _redeliver(emu: VKEmulator, r: web.Request, _b: dict[str, Any]) -> Any:
    emu.redeliver(r.match_info["event_id"])


def _events_version(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    emu.set_events_version(str(b["version"]), _group(r, b))


def _longpoll_events(emu: VKEmulator, r: web.Request, b: dict[str, Any]) -> Any:
    group_id = emu.community(_group(r, b)).group_id
    return {"ts": emu.longpoll.current_ts(group_id), "items": emu.longpoll.events(group_id)}


ROUTES: list[tuple[str, str, Action]] = [
    ("POST", "/control/communities", _add_community),
    ("POST", "/control/users", _add_user),
    ("POST", "/control/users/{user_id}/messages", _user_writes),
    ("POST", "/control/users/{user_id}/button", _press),
    ("POST", "/control/users/{user_id}/allow", _allow),
    ("POST", "/control/users/{user_id}/deny", _deny),
    ("POST", "/control/users/{user_id}/read", _read),
    ("GET", "/control/peers/{peer_id}/sent", _sent),
    ("GET", "/control/peers/{peer_id}/messages", _dialog),
    ("GET", "/control/stats", _stats),
    ("POST", "/control/faults", _fault),
    ("POST", "/control/flood", _flood),
    ("POST", "/control/longpoll/expire_key", _expire_key),
    ("POST", "/control/longpoll/lose_history", _lose_history),
    ("GET", "/control/longpoll/events", _longpoll_events),
    ("POST", "/control/callback", _set_callback),
    ("POST", "/control/callback/confirm", _confirm),
    ("GET", "/control/callback/attempts", _attempts),
    ("POST", "/control/events/{event_id}/redeliver", _redeliver),
    ("POST", "/control/events_version", _events_version),
]


def add_control_routes(app: web.Application, emulator: VKEmulator) -> None:
    for verb, path, action in ROUTES:
        app.router.add_route(verb, path, _json_endpoint(emulator, action))
