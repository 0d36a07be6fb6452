"""HTTP JSON control API under /control/: act as customers and inspect what bots did.

Same operations as the Python methods of TelegramEmulator, for the local sandbox UI and
for tests written in other processes. Replies are {"ok": true, "result": ...} or a 400
{"ok": false, "error": "..."} when the request makes no sense.

The managers' group (a forum supergroup; the sandbox's is MANAGERS_CHAT_ID in
gateway/sandbox/telegram/desk.py, with manager MANAGER_USER_ID as its owner):

- POST /control/groups {"title", "members": [ids], "admins": [ids], "owner", "is_forum"}
  creates a supergroup with the bots in it as admins.
- POST /control/groups/{chat_id}/members {"user_id", "status"}: add, promote
  ("administrator") or remove ("left") a member.
- GET /control/groups/{chat_id}/topics: the topics, [{message_thread_id, name, closed}].
- POST /control/groups/{chat_id}/topics {"name", "by_user"}: a human creates a topic.
- DELETE /control/groups/{chat_id}/topics/{thread_id}: a human admin deletes a topic.
- POST /control/groups/{chat_id}/messages {"user_id", "text", "thread_id"}: a member
  writes, in a topic when thread_id is given (a manager's /take, reply, ...); the
  bot gets it with message_thread_id and is_topic_message.
- GET /control/chats/{chat_id}/messages: everything in the group, topics included
  (each message's message_thread_id says where); GET /control/chats/{chat_id}/sent
  ?thread_id=N: what the bot wrote in one topic.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.sandbox.telegram.errors import ControlError

if TYPE_CHECKING:
    from gateway.sandbox.telegram.emulator import TelegramEmulator

Call = Callable[[dict[str, Any], web.Request], Any]


def _int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _endpoint(call: Call) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap a call of (json body merged with query, request) into a JSON endpoint."""

    async def handler(request: web.Request) -> web.Response:
        body: dict[str, Any] = dict(request.query)
        if request.body_exists:
            try:
                posted = await request.json()
            except ValueError:
                return _reply({"ok": False, "error": "body must be JSON"}, 400)
            if isinstance(posted, dict):
                body.update(posted)
        try:
            result = call(body, request)
        except (ControlError, KeyError, TypeError, ValueError) as exc:
            return _reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 400)
        return _reply({"ok": True, "result": result})

    return handler


def _reply(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def _data(body: dict[str, Any], default: bytes) -> bytes:
    encoded = body.get("data_base64")
    return base64.b64decode(encoded) if encoded else default


def add_control_routes(app: web.Application, emu: TelegramEmulator) -> None:
    """Register every /control/ endpoint on the emulator's app."""

    def uid(request: web.Request) -> int:
        return int(request.match_info["user_id"])

    def cid(request: web.Request) -> int:
        return int(request.match_info["chat_id"])

    def bot_id(body: dict[str, Any]) -> int | None:
        return _int(body.get("bot_id"))

    def contact(body: dict[str, Any], r: web.Request) -> Any:
        if "phone_number" not in body:
            return emu.user_shares_contact(uid(r), bot_id=bot_id(body))
        return emu.user_sends_contact(
            uid(r),
            body["phone_number"],
            body["first_name"],
            last_name=body.get("last_name"),
            contact_user_id=_int(body.get("contact_user_id")),
            bot_id=bot_id(body),
        )

    def group(body: dict[str, Any], r: web.Request) -> Any:
        chat = emu.create_group(
            body["title"],
            members=body.get("members", ()),
            admins=body.get("admins", ()),
            owner=_int(body.get("owner")),
            bot_ids=body.get("bot_ids"),
            bots_admin=body.get("bots_admin", True),
            is_forum=body.get("is_forum", True),
            chat_id=_int(body.get("chat_id")),
            username=body.get("username"),
            notify_bots=body.get("notify_bots", True),
        )
        return chat.to_dict()

    def fault(body: dict[str, Any], r: web.Request) -> Any:
        armed = emu.fail_next(
            body["method"],
            int(body.get("times", 1)),
            kind=body.get("kind", "error"),
            error_code=int(body.get("error_code", 500)),
            description=body.get("description", "Internal Server Error"),
            retry_after=_int(body.get("retry_after")),
            delay=float(body.get("delay", 30.0)),
            bot_id=bot_id(body),
        )
        return {"method": armed.method, "times": armed.times, "kind": armed.kind}

    def clear_faults(body: dict[str, Any], r: web.Request) -> Any:
        emu.faults.clear()
        return True

    def stats(body: dict[str, Any], r: web.Request) -> Any:
        bot = emu.bot(bot_id(body))
        return {
            "errors": {str(k): v for k, v in bot.error_counts.items()},
            "pending_update_count": len(bot.updates.pending),
            "blocked_by": sorted(bot.blocked_by),
        }

    routes: list[tuple[str, str, Call]] = [
        (
            "POST",
            "/control/bots",
            lambda b, r: emu.add_bot(
                b["token"], username=b.get("username"), first_name=b.get("first_name", "Test Bot")
            ).me(),
        ),
        ("GET", "/control/bots", lambda b, r: [x.me() for x in emu.world.bots.values()]),
        (
            "POST",
            "/control/users",
            lambda b, r: emu.add_user(
                _int(b.get("user_id")),
                b.get("first_name", "Test"),
                b.get("last_name"),
                b.get("username"),
                b.get("phone"),
                b.get("language_code", "en"),
            ).to_dict(),
        ),
        (
            "POST",
            "/control/users/{user_id}/start",
            lambda b, r: emu.user_starts(uid(r), b.get("payload"), bot_id=bot_id(b)),
        ),
        (
            "POST",
            "/control/users/{user_id}/text",
            lambda b, r: emu.user_sends_text(
                uid(r), b["text"], bot_id=bot_id(b), reply_to=_int(b.get("reply_to"))
            ),
        ),
        (
            "POST",
            "/control/users/{user_id}/photo",
            lambda b, r: emu.user_sends_photo(
                uid(r), _data(b, b"\x89PNG\r\n\x1a\n"), caption=b.get("caption"), bot_id=bot_id(b)
            ),
        ),
        (
            "POST",
            "/control/users/{user_id}/document",
            lambda b, r: emu.user_sends_document(
                uid(r),
                _data(b, b"hello"),
                file_name=b.get("file_name", "file.txt"),
                mime_type=b.get("mime_type", "text/plain"),
                caption=b.get("caption"),
                bot_id=bot_id(b),
            ),
        ),
        (
            "POST",
            "/control/users/{user_id}/voice",
            lambda b, r: emu.user_sends_voice(
                uid(r), _data(b, b"OggS"), duration=int(b.get("duration", 1)), bot_id=bot_id(b)
            ),
        ),
        (
            "POST",
            "/control/users/{user_id}/location",
            lambda b, r: emu.user_sends_location(
                uid(r), float(b["latitude"]), float(b["longitude"]), bot_id=bot_id(b)
            ),
        ),
        (
            "POST",
            "/control/users/{user_id}/sticker",
            lambda b, r: emu.user_sends_sticker(uid(r), b.get("emoji", "👍"), bot_id=bot_id(b)),
        ),
        ("POST", "/control/users/{user_id}/contact", contact),
        (
            "POST",
            "/control/users/{user_id}/press",
            lambda b, r: {
                "callback_query_id": emu.user_presses_button(
                    uid(r),
                    int(b["message_id"]),
                    b["data"],
                    chat_id=_int(b.get("chat_id")),
                    bot_id=bot_id(b),
                )
            },
        ),
        (
            "POST",
            "/control/users/{user_id}/block",
            lambda b, r: emu.user_blocks_bot(uid(r), bot_id=bot_id(b)),
        ),
        (
            "POST",
            "/control/users/{user_id}/unblock",
            lambda b, r: emu.user_unblocks_bot(uid(r), bot_id=bot_id(b)),
        ),
        (
            "GET",
            "/control/callbacks/{query_id}",
            lambda b, r: emu.callback_answer(r.match_info["query_id"], bot_id=bot_id(b)),
        ),
        ("POST", "/control/groups", group),
        (
            "POST",
            "/control/groups/{chat_id}/topics",
            lambda b, r: {
                "message_thread_id": emu.create_topic(
                    cid(r),
                    b["name"],
                    by_user=_int(b.get("by_user")),
                    icon_color=int(b.get("icon_color", 7322096)),
                )
            },
        ),
        (
            "GET",
            "/control/groups/{chat_id}/topics",
            lambda b, r: [{**t.to_dict(), "closed": t.closed} for t in emu.topics(cid(r))],
        ),
        (
            "DELETE",
            "/control/groups/{chat_id}/topics/{thread_id}",
            lambda b, r: emu.delete_topic(cid(r), int(r.match_info["thread_id"])),
        ),
        (
            "POST",
            "/control/groups/{chat_id}/members",
            lambda b, r: emu.set_member(cid(r), int(b["user_id"]), b.get("status", "member")),
        ),
        (
            "POST",
            "/control/groups/{chat_id}/messages",
            lambda b, r: emu.member_writes(
                cid(r), int(b["user_id"]), b["text"], thread_id=_int(b.get("thread_id"))
            ),
        ),
        (
            "GET",
            "/control/chats/{chat_id}/messages",
            lambda b, r: [m.inspect() for m in emu.messages(cid(r), bot_id=bot_id(b))],
        ),
        (
            "GET",
            "/control/chats/{chat_id}/sent",
            lambda b, r: [
                m.inspect()
                for m in emu.sent_messages(
                    cid(r), bot_id=bot_id(b), thread_id=_int(b.get("thread_id"))
                )
            ],
        ),
        (
            "GET",
            "/control/chats/{chat_id}/actions",
            lambda b, r: emu.chat_actions(cid(r), bot_id=bot_id(b)),
        ),
        ("GET", "/control/stats", stats),
        ("GET", "/control/updates", lambda b, r: emu.pending_updates(bot_id(b))),
        (
            "POST",
            "/control/updates/{update_id}/redeliver",
            lambda b, r: emu.redeliver(int(r.match_info["update_id"]), bot_id=bot_id(b)),
        ),
        ("POST", "/control/faults", fault),
        ("DELETE", "/control/faults", clear_faults),
        (
            "GET",
            "/control/calls",
            lambda b, r: [{"method": m, "params": p} for m, p in emu.calls(bot_id(b))],
        ),
    ]
    for method, path, call in routes:
        app.router.add_route(method, path, _endpoint(call))
