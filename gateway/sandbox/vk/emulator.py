"""VKEmulator: the in-memory VK world, its aiohttp app and the Python control surface."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.sandbox.vk.api import MethodDispatcher
from gateway.sandbox.vk.callback import CallbackSender, DeliveryAttempt
from gateway.sandbox.vk.control import add_control_routes
from gateway.sandbox.vk.events import envelope, message_new_object, message_object
from gateway.sandbox.vk.faults import Fault, FaultBook, Stats
from gateway.sandbox.vk.limits import Clock, RateWindow, Sleeper, VKLimits, system_clock
from gateway.sandbox.vk.longpoll import LongPoll
from gateway.sandbox.vk.state import CallbackServer, Community, Message, Store, User


@dataclass(frozen=True, slots=True)
class PendingButtonEvent:
    """A callback-button press waiting for messages.sendMessageEventAnswer."""

    event_id: str
    group_id: int
    user_id: int
    peer_id: int
    payload: Any
    created_at: float


class VKEmulator:
    """A stateful fake of the VK API, Bots Long Poll and Callback API for one or more groups."""

    def __init__(
        self,
        *,
        group_id: int = 1,
        group_name: str = "Chatgate Test",
        screen_name: str | None = None,
        token: str | None = None,
        confirmation_code: str | None = None,
        limits: VKLimits | None = None,
        clock: Clock = system_clock,
        sleeper: Sleeper = asyncio.sleep,
        public_url: str | None = None,
    ) -> None:
        self.limits = limits or VKLimits()
        self.clock = clock
        self.public_url = public_url.rstrip("/") if public_url else None
        self.store = Store()
        self.rate = RateWindow(self.limits.requests_per_second, clock)
        self.faults = FaultBook()
        self.stats = Stats()
        self.longpoll = LongPoll(self.limits)
        self.callback = CallbackSender(self.limits, sleeper)
        self.button_events: dict[str, PendingButtonEvent] = {}
        self.event_answers: list[dict[str, Any]] = []
        self._events: dict[str, tuple[int, dict[str, Any]]] = {}
        self._dispatcher = MethodDispatcher(self)
        self._app: web.Application | None = None
        self.default_group_id = group_id
        self.add_community(
            group_id,
            group_name,
            screen_name=screen_name,
            token=token or f"vk-test-token-{group_id}",
            confirmation_code=confirmation_code,
        )

    # -- the HTTP application -------------------------------------------------

    def make_app(self) -> web.Application:
        """A fresh app; run it standalone or `parent.add_subapp("/sandbox/vk", app)`."""
        app = web.Application()
        for verb in ("GET", "POST"):
            app.router.add_route(verb, "/method/{name}", self._dispatcher.handle)
            app.router.add_route(verb, "/lp/{group_id}", self.longpoll.handle)
        add_control_routes(app, self)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    @property
    def app(self) -> web.Application:
        if self._app is None:
            self._app = self.make_app()
        return self._app

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.longpoll.close()

    async def _on_cleanup(self, _app: web.Application) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release hanging polls and stop Callback API delivery."""
        self.longpoll.close()
        await self.callback.aclose()

    # -- setup ----------------------------------------------------------------

    def add_community(
        self,
        group_id: int,
        name: str,
        *,
        screen_name: str | None = None,
        token: str | list[str] | None = None,
        confirmation_code: str | None = None,
    ) -> Community:
        tokens = [token] if isinstance(token, str) else token
        return self.store.add_community(group_id, name, screen_name, tokens, confirmation_code)

    def community(self, group_id: int | None = None) -> Community:
        return self.store.community(self.default_group_id if group_id is None else group_id)

    def token(self, group_id: int | None = None) -> str:
        """One access token of the community, for building a vkbottle API."""
        return sorted(self.community(group_id).tokens)[0]

    def add_user(
        self,
        user_id: int | None = None,
        first_name: str = "Test",
        last_name: str = "User",
        *,
        allowed: bool = False,
        group_id: int | None = None,
    ) -> User:
        """Create a user; `allowed` pre-grants messages from the community (no event)."""
        user = self.store.add_user(user_id, first_name, last_name)
        self.store.dialog(self.community(group_id).group_id, user.user_id).allowed = allowed
        return user

    def set_events_version(self, version: str, group_id: int | None = None) -> None:
        """API version of event objects; below 5.103 message_new is the flat message."""
        self.community(group_id).events_version = version

    def set_echo_replies(self, enabled: bool, group_id: int | None = None) -> None:
        """Emit message_reply events for the community's own sends."""
        self.community(group_id).echo_replies = enabled

    # -- events ----------------------------------------------------------------

    def publish(self, community: Community, event_type: str, obj: dict[str, Any]) -> str:
        """Record an event for Long Poll and queue it for the Callback API; returns event_id."""
        event = envelope(community, event_type, obj)
        self._events[event["event_id"]] = (community.group_id, event)
        self.longpoll.publish(community.group_id, event)
        self.callback.enqueue(community, event)
        return str(event["event_id"])

    def redeliver(self, event_id: str) -> None:
        """Hook: send an already delivered Callback API event again, same event_id."""
        group_id, event = self._events[event_id]
        self.callback.enqueue(self.community(group_id), event)

    def event(self, event_id: str) -> dict[str, Any]:
        return self._events[event_id][1]

    # -- what users do -----------------------------------------------------------

    def user_writes(
        self,
        user_id: int,
        text: str = "",
        *,
        payload: dict[str, Any] | str | None = None,
        ref: str | None = None,
        ref_source: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        group_id: int | None = None,
    ) -> Message:
        """The user sends the community a message (a text button press carries `payload`)."""
        community = self.community(group_id)
        self.store.user(user_id)
        dialog = self.store.dialog(community.group_id, user_id)
        dialog.allowed = True  # writing to a community lets it answer
        message = Message(
            message_id=self.store.next_message_id(community.group_id),
            conversation_message_id=dialog.next_cmid(),
            peer_id=user_id,
            from_id=user_id,
            text=text,
            date=int(self.clock()),
            out=False,
            attachments=list(attachments or []),
            payload=payload if payload is None or isinstance(payload, str) else json.dumps(payload),
            ref=ref,
            ref_source=ref_source,
        )
        dialog.messages.append(message)
        obj = message_new_object(community, message, self.limits.new_event_shape_version)
        self.publish(community, "message_new", obj)
        return message

    def press_callback_button(
        self,
        user_id: int,
        payload: dict[str, Any] | str | None = None,
        *,
        conversation_message_id: int | None = None,
        group_id: int | None = None,
    ) -> str:
        """The user presses a callback button; returns the message_event's event_id."""
        community = self.community(group_id)
        self.store.user(user_id)
        dialog = self.store.dialog(community.group_id, user_id)
        if conversation_message_id is None:
            sent = dialog.sent
            conversation_message_id = sent[-1].conversation_message_id if sent else 0
        event_id = secrets.token_hex(6)
        decoded = json.loads(payload) if isinstance(payload, str) else payload
        self.button_events[event_id] = PendingButtonEvent(
            event_id, community.group_id, user_id, user_id, decoded, self.clock()
        )
        obj: dict[str, Any] = {
            "user_id": user_id,
            "peer_id": user_id,
            "event_id": event_id,
            "conversation_message_id": conversation_message_id,
        }
        if decoded is not None:
            obj["payload"] = decoded
        self.publish(community, "message_event", obj)
        return event_id

    def allow_messages(
        self, user_id: int, key: str | None = None, *, group_id: int | None = None
    ) -> None:
        community = self.community(group_id)
        self.store.user(user_id)
        self.store.dialog(community.group_id, user_id).allowed = True
        self.publish(community, "message_allow", {"user_id": user_id, "key": key or ""})

    def deny_messages(self, user_id: int, *, group_id: int | None = None) -> None:
        community = self.community(group_id)
        self.store.user(user_id)
        self.store.dialog(community.group_id, user_id).allowed = False
        self.publish(community, "message_deny", {"user_id": user_id})

    def user_reads(
        self, user_id: int, up_to: int | None = None, *, group_id: int | None = None
    ) -> int:
        """The user reads the dialog up to a message id (default: the latest one)."""
        community = self.community(group_id)
        dialog = self.store.dialog(community.group_id, user_id)
        sent = dialog.sent
        read = up_to if up_to is not None else (sent[-1].message_id if sent else 0)
        dialog.out_read = max(dialog.out_read, read)
        self.publish(
            community,
            "message_read",
            {"from_id": user_id, "peer_id": user_id, "read_message_id": read},
        )
        return read

    def echo_reply(self, community: Community, message: Message) -> None:
        if community.echo_replies:
            self.publish(community, "message_reply", message_object(message))

    # -- inspection -----------------------------------------------------------------

    def sent_to(self, peer_id: int, *, group_id: int | None = None) -> list[Message]:
        """Messages the community sent to this peer, oldest first."""
        return self.store.dialog(self.community(group_id).group_id, peer_id).sent

    def dialog_messages(self, peer_id: int, *, group_id: int | None = None) -> list[Message]:
        return list(self.store.dialog(self.community(group_id).group_id, peer_id).messages)

    def error_count(self, code: int) -> int:
        return self.stats.errors[code]

    def callback_attempts(self, event_id: str | None = None) -> list[DeliveryAttempt]:
        return [a for a in self.callback.attempts if event_id is None or a.event_id == event_id]

    async def callback_drain(self) -> None:
        """Wait until every queued Callback API event is delivered or given up on."""
        await self.callback.drain()

    # -- failure hooks ----------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        times: int = 1,
        *,
        error_code: int | None = None,
        error_msg: str | None = None,
        http_status: int | None = None,
        drop: bool = False,
    ) -> None:
        """Make the next `times` calls of `method` ("*" for any) fail.

        With `error_code` VK answers that error; with `http_status` a bare HTML error page;
        with `drop` the connection is closed without an answer.
        """
        if error_code is None and http_status is None and not drop:
            error_code = 10
        self.faults.add(Fault(method, times, error_code, error_msg, http_status, drop))

    def flood_next(self, peer_id: int | None = None, times: int = 1) -> None:
        """The next `times` messages.send to this peer (None: any) get error 9."""
        self.faults.flood(peer_id, times)

    def expire_longpoll_key(self, group_id: int | None = None) -> None:
        self.longpoll.expire_key(self.community(group_id).group_id)

    def lose_longpoll_history(self, group_id: int | None = None) -> None:
        self.longpoll.lose_information(self.community(group_id).group_id)

    # -- Callback API setup -------------------------------------------------------------

    def set_callback(
        self,
        url: str,
        secret: str | None = None,
        confirmation_code: str | None = None,
        *,
        group_id: int | None = None,
        events: dict[str, bool] | None = None,
    ) -> CallbackServer:
        """Point the community's Callback API at `url` (unconfirmed until the handshake)."""
        community = self.community(group_id)
        if confirmation_code is not None:
            community.confirmation_code = confirmation_code
        server_id = community.callback.server_id if community.callback else 1
        community.callback = CallbackServer(server_id, url, secret, events=events)
        return community.callback

    async def confirm_callback(self, group_id: int | None = None) -> bool:
        """Run the confirmation handshake now; events also trigger it lazily."""
        return await self.callback.confirm(self.community(group_id))
