"""Every failure as a JSON answer: the error shapes and the middleware that makes them.

Store errors map to status codes here and nowhere else; anything unexpected is
logged with its traceback and answers a bare 500, so no internals reach a client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from gateway.api.schemas import ErrorOut, FieldError
from storage.errors import Conflict, InvalidAddress, NotFound

__all__ = ["ApiError", "error_middleware", "error_response", "from_pydantic", "validation_error"]

log = logging.getLogger("chatgate.api")


class ApiError(Exception):
    """An answer other than success, raised from anywhere inside a handler."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        detail: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.detail = list(detail)
        self.headers = headers or {}

    @classmethod
    def field(cls, status: int, error: str, field: str, message: str) -> ApiError:
        """An error about one named field."""
        return cls(status, error, message, [FieldError(field=field, message=message)])


def validation_error(errors: Iterable[FieldError]) -> ApiError:
    detail = list(errors)
    fields = ", ".join(sorted({e.field for e in detail}))
    return ApiError(422, "validation", f"invalid {fields}", detail)


def from_pydantic(exc: ValidationError, prefix: str = "") -> ApiError:
    """The pydantic errors as (field, message) pairs a client can act on."""
    detail = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in (prefix, *err["loc"]) if part != "")
        message = err["msg"].removeprefix("Value error, ")
        detail.append(FieldError(field=loc or "body", message=message))
    return validation_error(detail)


def error_response(
    status: int,
    error: str,
    message: str,
    detail: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = ErrorOut(error=error, message=message, detail=list(detail))
    return web.Response(
        status=status,
        text=body.model_dump_json(),
        content_type="application/json",
        headers=headers,
    )


def _http_error(exc: web.HTTPException) -> web.Response:
    error = exc.reason.lower().replace(" ", "_").replace("-", "_")
    headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
    return error_response(exc.status, error, exc.reason, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn whatever a handler raises into a JSON answer."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.error, exc.message, exc.detail, exc.headers)
    except InvalidAddress as exc:
        return error_response(
            422, "validation", str(exc), [FieldError(field=exc.field, message=str(exc))]
        )
    except NotFound as exc:
        return error_response(404, "not_found", str(exc))
    except Conflict as exc:
        return error_response(
            409, "conflict", exc.message, [FieldError(field=exc.field, message=exc.message)]
        )
    except IntegrityError:
        # A unique key taken by a concurrent request between our check and our write.
        log.warning("api.integrity_conflict", extra=_where(request), exc_info=True)
        return error_response(409, "conflict", "the request conflicts with stored data; retry")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(exc)
    except Exception:
        log.exception("api.unhandled", extra=_where(request))
        return error_response(500, "internal", "internal error; it has been logged")


def _where(request: web.Request) -> dict[str, Any]:
    return {"method": request.method, "path": request.path}
