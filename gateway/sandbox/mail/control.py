"""`/control/...`: the console's JSON endpoints for the sandbox mailboxes.

- `GET /control/config`; `GET /control/mailboxes`;
- `GET /control/mailboxes/{address}/messages`;
- `POST /control/mailboxes/{address}/messages` `{"text", "subject"?, "to"?}`: write to the shop;
- `POST /control/mailboxes/{address}/state` `{"exists"}`: delete the mailbox (mail to it is
  refused 550 5.1.1, as for a closed account) or bring it back;
- `POST /control/messages/{id}/reply` `{"text"}`; `POST /control/messages/{id}/unsubscribe`
  (one-click); `GET /control/messages/{id}/raw` (the message as it came, RFC 5322).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.sandbox.mail.errors import MailRefused

if TYPE_CHECKING:
    from gateway.sandbox.mail.post_office import PostOffice

__all__ = ["add_control_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("a JSON object is expected")
    return data


def _mail_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise KeyError(f"no message {raw}")
    return int(raw)


def _address(request: web.Request) -> str:
    address = request.match_info["address"].strip().lower()
    local, at, domain = address.rpartition("@")
    if not (local and at and "." in domain):
        raise ValueError(f"{address!r} is not a mail address")
    return address


def add_control_routes(app: web.Application, office: PostOffice) -> None:
    """Mount the control endpoints on the post office's app."""

    def endpoint(action: Callable[[web.Request], Awaitable[Any]]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                result = await action(request)
            except KeyError as exc:
                return web.json_response({"error": str(exc.args[0])}, status=404)
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            except MailRefused as exc:
                return web.json_response({"error": str(exc)}, status=502)
            if isinstance(result, web.StreamResponse):
                return result
            return web.json_response(result)

        return handler

    async def config(_request: web.Request) -> Any:
        return {"shop_address": office.shop_address, "smtp_port": office.server.port}

    async def mailboxes(_request: web.Request) -> Any:
        return {"items": office.mailboxes.addresses()}

    async def messages(request: web.Request) -> Any:
        address = _address(request)
        return {
            "mailbox": address,
            "exists": office.exists(address),
            "items": [m.as_json() for m in office.mailboxes.of(address)],
        }

    async def state(request: web.Request) -> Any:
        address = _address(request)
        exists = (await _body(request)).get("exists")
        if not isinstance(exists, bool):
            raise ValueError('"exists" must be true or false')
        if exists:
            office.deleted.discard(address)
        else:
            office.deleted.add(address)
        return {"mailbox": address, "exists": exists}

    async def write(request: web.Request) -> Any:
        address = _address(request)
        body = await _body(request)
        mail = await office.write(
            address,
            str(body.get("text", "")),
            subject=str(body.get("subject", "")),
            to=str(body.get("to", "")),
        )
        return mail.as_json()

    async def reply(request: web.Request) -> Any:
        mail_id = _mail_id(request)
        body = await _body(request)
        return (await office.reply(mail_id, str(body.get("text", "")))).as_json()

    async def unsubscribe(request: web.Request) -> Any:
        status = await office.unsubscribe(_mail_id(request))
        if not 200 <= status < 300:
            raise MailRefused(f"chatgate answered the one-click unsubscribe with {status}")
        return {"status": status}

    async def raw(request: web.Request) -> Any:
        mail = office.mailboxes.get(_mail_id(request))
        return web.Response(body=mail.raw, content_type="text/plain", charset="utf-8")

    app.router.add_get("/control/config", endpoint(config))
    app.router.add_get("/control/mailboxes", endpoint(mailboxes))
    app.router.add_get("/control/mailboxes/{address}/messages", endpoint(messages))
    app.router.add_post("/control/mailboxes/{address}/messages", endpoint(write))
    app.router.add_post("/control/mailboxes/{address}/state", endpoint(state))
    app.router.add_post("/control/messages/{id}/reply", endpoint(reply))
    app.router.add_post("/control/messages/{id}/unsubscribe", endpoint(unsubscribe))
    app.router.add_get("/control/messages/{id}/raw", endpoint(raw))
