"""`/control/...`: the console's JSON endpoints for the sandbox phones.

`GET /control/config`, `GET /control/phones`, `GET /control/phones/{phone}/messages`,
`POST /control/phones/{phone}/messages` `{"text"}` (text the shop from that phone),
`POST /control/phones/{phone}/state` `{"reachable"}` (switch the phone off or on),
`POST /control/faults` `{"status", "code", "times", "retry_after"}` (refuse the next sends).
A phone is written in E.164 (`+79001234567`, `%2B` in a URL works too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.sandbox.sms.phones import e164

if TYPE_CHECKING:
    from gateway.sandbox.sms.emulator import TwilioEmulator

__all__ = ["add_control_routes"]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "the body is not JSON"}') from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='{"error": "a JSON object is expected"}')
    return data


def add_control_routes(app: web.Application, emulator: TwilioEmulator) -> None:
    """Mount the control endpoints on the emulator's app."""

    def number(request: web.Request) -> str:
        raw = request.match_info["phone"]
        found = e164(raw)
        if found is None:
            raise web.HTTPBadRequest(
                text=f'{{"error": "{raw!r} is not a phone number in international form"}}',
                content_type="application/json",
            )
        return found

    async def config(_request: web.Request) -> web.Response:
        return web.json_response({"number": emulator.number, "account_sid": emulator.account_sid})

    async def phones(_request: web.Request) -> web.Response:
        return web.json_response({"items": [p.as_json() for p in emulator.phones.known()]})

    async def thread(request: web.Request) -> web.Response:
        phone = emulator.phones.phone(number(request))
        return web.json_response(
            {
                "phone": phone.number,
                "reachable": phone.reachable,
                "items": [m.as_json() for m in phone.messages],
            }
        )

    async def text(request: web.Request) -> web.Response:
        body = await _body(request)
        phone = number(request)
        try:
            sms = await emulator.text_from(phone, str(body.get("text", "")))
        except ValueError as exc:
            return _error(400, str(exc))
        if sms.webhook_status is None or not 200 <= sms.webhook_status < 300:
            answer = sms.webhook_status or "nothing"
            return _error(502, f"chatgate's SMS webhook answered {answer}")
        return web.json_response(sms.as_json())

    async def state(request: web.Request) -> web.Response:
        body = await _body(request)
        reachable = body.get("reachable")
        if not isinstance(reachable, bool):
            return _error(400, '"reachable" must be true or false')
        phone = emulator.phones.phone(number(request))
        phone.reachable = reachable
        return web.json_response(phone.as_json())

    async def faults(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            after = body.get("retry_after")
            emulator.fail_next(
                int(body.get("times", 1)),
                int(body.get("status", 429)),
                int(body.get("code", 20429)),
                None if after is None else int(after),
            )
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        return web.json_response({"ok": True})

    app.router.add_get("/control/config", config)
    app.router.add_post("/control/faults", faults)
    app.router.add_get("/control/phones", phones)
    app.router.add_get("/control/phones/{phone}/messages", thread)
    app.router.add_post("/control/phones/{phone}/messages", text)
    app.router.add_post("/control/phones/{phone}/state", state)
