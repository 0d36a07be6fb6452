"""`/api/broadcasts`: a flow sent to a segment, planned in batches; progress, pause, cancel.

A broadcast always runs a flow: a one-off message is a flow file with one `send`
step, so it gets the same versioning, policies (consent, quiet hours, caps),
cascade and statistics as every other message a flow sends.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints

from flows.broadcasts import BroadcastError, Broadcasts, Progress
from gateway.api.errors import ApiError
from gateway.api.inputs import path_id, read_body
from gateway.api.replies import json_reply
from gateway.api.routes import Reply, Route
from gateway.api.schemas import Request, Text, Timestamp

__all__ = ["BROADCASTS", "BroadcastBody", "BroadcastOut", "routes"]

# The parent application holds the Broadcasts service when flows are configured.
BROADCASTS = web.AppKey("chatgate_broadcasts", Broadcasts)

_ID = "/api/broadcasts/{id:\\d{1,18}}"


class BroadcastBody(Request):
    """Send `flow` to everyone in `segment` (the flow's own segment when left out)."""

    flow: Annotated[Text, StringConstraints(max_length=100)] = Field(
        description="The name of a flow in the flows folder."
    )
    segment: Annotated[str, StringConstraints(max_length=4000)] | None = Field(
        default=None,
        description="A segment expression, e.g. \"tag = 'vip' and consent.marketing.email\".",
    )
    name: Annotated[Text, StringConstraints(max_length=200)] | None = Field(
        default=None, description="A label for people; the flow's name when left out."
    )


class BroadcastOut(BaseModel):
    """A broadcast and how far it has got."""

    id: int
    name: str
    flow: str
    segment: str
    status: str = Field(description="planning, running, paused, cancelled or done.")
    planned: int = Field(description="Customers given a run so far.")
    total: int | None = Field(description="Customers in the segment (final once planned).")
    progress: float = Field(description="planned / total, 0 to 1.")
    runs: dict[str, int] = Field(description="The broadcast's runs by status.")
    sent: int = Field(description="Runs that have sent at least one message.")
    pending: int = Field(description="Live runs that have not sent anything yet.")
    deliveries: dict[str, int] = Field(description="Its messages by delivery status.")
    created_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def of(cls, progress: Progress) -> BroadcastOut:
        return cls(
            id=progress.id,
            name=progress.name,
            flow=progress.flow,
            segment=progress.segment,
            status=progress.status,
            planned=progress.planned,
            total=progress.total,
            progress=round(progress.fraction, 4),
            runs=progress.runs,
            sent=progress.sent,
            pending=progress.pending,
            deliveries=progress.deliveries,
            created_at=progress.created_at,
            finished_at=progress.finished_at,
        )


def _service(request: web.Request) -> Broadcasts:
    service = request.config_dict.get(BROADCASTS)
    if service is None:
        raise ApiError(503, "unavailable", "flows are not configured: set CHATGATE_FLOWS_DIR")
    return service


def _api_error(exc: BroadcastError) -> ApiError:
    kind = {404: "not_found", 409: "conflict"}.get(exc.status, "validation")
    return ApiError.field(exc.status, kind, exc.field, exc.message)


async def _answer(service: Broadcasts, broadcast_id: int, status: int = 200) -> web.Response:
    progress = await service.progress(broadcast_id)
    if progress is None:
        raise ApiError(404, "not_found", f"no broadcast {broadcast_id}")
    return json_reply(BroadcastOut.of(progress), status=status)


async def create_broadcast(request: web.Request) -> web.Response:
    body = await read_body(request, BroadcastBody)
    service = _service(request)
    try:
        broadcast = await service.create(flow=body.flow, segment=body.segment, name=body.name)
    except BroadcastError as exc:
        raise _api_error(exc) from exc
    assert broadcast.id is not None
    return await _answer(service, broadcast.id, status=202)


async def get_broadcast(request: web.Request) -> web.Response:
    return await _answer(_service(request), path_id(request))


async def _control(request: web.Request, verb: str) -> web.Response:
    service = _service(request)
    broadcast_id = path_id(request)
    action = {"pause": service.pause, "resume": service.resume, "cancel": service.cancel}[verb]
    try:
        await action(broadcast_id)
    except BroadcastError as exc:
        raise _api_error(exc) from exc
    return await _answer(service, broadcast_id)


async def pause_broadcast(request: web.Request) -> web.Response:
    return await _control(request, "pause")


async def resume_broadcast(request: web.Request) -> web.Response:
    return await _control(request, "resume")


async def cancel_broadcast(request: web.Request) -> web.Response:
    return await _control(request, "cancel")


_CONTROL_ERRORS = (401, 404, 409, 503)

routes = [
    Route(
        "POST",
        "/api/broadcasts",
        create_broadcast,
        "createBroadcast",
        "Send a flow to a segment; recipients are planned in batches in the background",
        body=BroadcastBody,
        replies={202: Reply("Created; planning has started", BroadcastOut)},
        errors=(400, 401, 404, 422, 503),
        tags=("broadcasts",),
    ),
    Route(
        "GET",
        _ID,
        get_broadcast,
        "getBroadcast",
        "A broadcast's progress: planned/total, runs sent and pending, messages by status",
        replies={200: Reply("The broadcast", BroadcastOut)},
        errors=(401, 404, 503),
        tags=("broadcasts",),
    ),
    Route(
        "POST",
        f"{_ID}/pause",
        pause_broadcast,
        "pauseBroadcast",
        "Pause: plan nobody more and send nothing new until resumed",
        replies={200: Reply("Paused", BroadcastOut)},
        errors=_CONTROL_ERRORS,
        tags=("broadcasts",),
    ),
    Route(
        "POST",
        f"{_ID}/resume",
        resume_broadcast,
        "resumeBroadcast",
        "Resume a paused broadcast where it stopped",
        replies={200: Reply("Resumed", BroadcastOut)},
        errors=_CONTROL_ERRORS,
        tags=("broadcasts",),
    ),
    Route(
        "POST",
        f"{_ID}/cancel",
        cancel_broadcast,
        "cancelBroadcast",
        "Cancel: its live runs end with a reason and its queued messages are withdrawn",
        replies={200: Reply("Cancelled", BroadcastOut)},
        errors=_CONTROL_ERRORS,
        tags=("broadcasts",),
    ),
]
