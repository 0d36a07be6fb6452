"""Merge two customers into one, and undo it."""

from __future__ import annotations

from aiohttp import web

from gateway.api.customers import CUSTOMER_ID
from gateway.api.errors import ApiError
from gateway.api.inputs import path_id, read_body
from gateway.api.profiles import profile
from gateway.api.replies import json_reply
from gateway.api.routes import Reply, Route
from gateway.api.schemas import MergeBody, MergeOut, MergeRecord, UndoOut
from gateway.api.state import DATABASE
from storage.customers import Customers
from storage.errors import Conflict
from storage.merges import Merges
from storage.models import Merge

__all__ = ["routes"]

# The store names the two sides by its own argument names; the client knows these.
_FIELDS = {"survivor_id": "id", "absorbed_id": "other"}


def _record(merge: Merge) -> MergeRecord:
    assert merge.id is not None
    return MergeRecord(
        id=merge.id,
        survivor=merge.survivor_id,
        absorbed=merge.absorbed_id,
        created_at=merge.created_at,
        undone_at=merge.undone_at,
    )


async def merge_customers(request: web.Request) -> web.Response:
    body = await read_body(request, MergeBody)
    async with request.config_dict[DATABASE].session() as session:
        customers = Customers(session)
        survivor = await customers.get(path_id(request))
        other = await customers.get(body.other)
        assert survivor.id is not None
        assert other.id is not None
        if survivor.id == other.id:
            raise ApiError.field(
                409, "conflict", "other", f"customer {body.other} is already customer {survivor.id}"
            )
        try:
            merge = await Merges(session).merge(survivor.id, other.id, actor="api")
        except Conflict as exc:
            raise ApiError.field(
                409, "conflict", _FIELDS.get(exc.field, exc.field), exc.message
            ) from exc
        out = MergeOut(
            merge=_record(merge), customer=await profile(session, await customers.get(survivor.id))
        )
    return json_reply(out)


async def undo_merge(request: web.Request) -> web.Response:
    merge_id = path_id(request, "merge_id")
    async with request.config_dict[DATABASE].session() as session:
        merges = Merges(session)
        await merges.unmerge(merge_id)
        merge = await merges.get(merge_id)
        customers = Customers(session)
        out = UndoOut(
            merge=_record(merge),
            survivor=await profile(session, await customers.get(merge.survivor_id)),
            absorbed=await profile(session, await customers.get(merge.absorbed_id)),
        )
    return json_reply(out)


routes = [
    Route(
        "POST",
        f"/api/customers/{CUSTOMER_ID}/merge",
        merge_customers,
        "mergeCustomers",
        "Merge customer `other` INTO this one; reversible with the merge's undo",
        body=MergeBody,
        replies={200: Reply("The merge record and the surviving profile", MergeOut)},
        errors=(400, 404, 409, 422),
    ),
    Route(
        "POST",
        r"/api/merges/{merge_id:\d{1,18}}/undo",
        undo_merge,
        "undoMerge",
        "Put both customers of a merge back as they were",
        replies={200: Reply("The merge record, now undone, and both profiles", UndoOut)},
        errors=(404, 409),
    ),
]
