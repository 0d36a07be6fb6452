"""`/method/<name>`: auth, version, injected faults, rate limit, then the method itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.sandbox.vk.errors import ERROR_MESSAGES, VKError, error_body
from gateway.sandbox.vk.methods import METHODS, Call

if TYPE_CHECKING:
    from gateway.sandbox.vk.emulator import VKEmulator

_HTML_ERROR = "<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>"


async def request_params(request: web.Request) -> dict[str, str]:
    """Query string and urlencoded/multipart form merged; vkbottle POSTs a form."""
    params: dict[str, str] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        params.update({key: str(value) for key, value in (await request.post()).items()})
    return params


def base_url(request: web.Request, method: str, public_url: str | None) -> str:
    """Where this app is reachable, so a mounted app hands out its own prefix."""
    if public_url:
        return public_url
    url = str(request.url.with_query(None))
    return url.removesuffix(f"/method/{method}")


class MethodDispatcher:
    """Turns an HTTP call into a method call and the result into VK's JSON, always HTTP 200."""

    def __init__(self, emulator: VKEmulator) -> None:
        self._emu = emulator

    def _error(self, code: int, message: str, method: str, params: dict[str, str]) -> web.Response:
        stats = self._emu.stats
        stats.errors[code] += 1
        stats.error_log.append({"method": method, "error_code": code, "error_msg": message})
        return web.json_response(error_body(code, message, method, params))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        emu = self._emu
        method = request.match_info["name"]
        params = await request_params(request)
        emu.stats.calls[method] += 1
        community = emu.store.community_for_token(params.get("access_token", ""))
        if community is None:
            return self._error(5, ERROR_MESSAGES[5], method, params)
        version = params.get("v", "")
        if not version:
            return self._error(8, "Invalid request: v (version) is required", method, params)

        fault = emu.faults.take(method)
        if fault is not None:
            if fault.drop:
                if request.transport is not None:
                    request.transport.close()
                raise ConnectionResetError("connection dropped by the VK emulator")
            if fault.http_status is not None:
                return web.Response(
                    status=fault.http_status,
                    text=_HTML_ERROR.format(status=fault.http_status),
                    content_type="text/html",
                )
            code = fault.error_code or 10
            message = fault.error_msg or ERROR_MESSAGES.get(code, ERROR_MESSAGES[1])
            return self._error(code, message, method, params)

        if not emu.rate.admit(params.get("access_token", "")):
            return self._error(6, ERROR_MESSAGES[6], method, params)

        implementation = METHODS.get(method)
        if implementation is None:
            return self._error(3, ERROR_MESSAGES[3], method, params)
        call = Call(
            emulator=emu,
            community=community,
            params=params,
            version=version,
            base_url=base_url(request, method, emu.public_url),
        )
        try:
            response: Any = implementation(call)
        except VKError as exc:
            return self._error(exc.code, exc.message, method, params)
        return web.json_response({"response": response})
