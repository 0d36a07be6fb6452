"""`GET /api/customers/{id}/flows`: the customer's flow runs and what happened at each step.

The answer to "why didn't this customer get it?": every send, skip, postponement,
cap and expiry of every run, with its reason, oldest first.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel
from sqlmodel import col

from gateway.api.inputs import path_id
from gateway.api.replies import json_reply
from gateway.api.routes import Reply, Route
from gateway.api.state import DATABASE
from storage.customers import Customers
from storage.models import Conversion, FlowRun, FlowStep

__all__ = ["CustomerFlows", "FlowRunOut", "FlowStepOut", "routes"]


class FlowStepOut(BaseModel):
    """One thing that happened at a step: sent, skipped, postponed, capped, ..."""

    step: str
    outcome: str
    channel: str | None
    reason: str | None
    delivery_id: int | None
    message_id: int | None
    at: datetime


class ConversionOut(BaseModel):
    step: str | None
    channel: str | None
    variant: str | None
    delivery_id: int | None
    event_id: int
    amount: Decimal | None
    currency: str | None
    at: datetime


class FlowRunOut(BaseModel):
    """One run of one flow for this customer, with its steps in order."""

    id: int
    flow: str
    version: str
    trigger_key: str
    status: str
    variant: str | None
    holdout: bool
    next_at: datetime | None
    goal: dict[str, Any] | None
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    steps: list[FlowStepOut]
    conversion: ConversionOut | None


class CustomerFlows(BaseModel):
    customer_id: int
    runs: list[FlowRunOut]


async def customer_flows(request: web.Request) -> web.Response:
    async with request.config_dict[DATABASE].session() as session:
        customer = await Customers(session).get(path_id(request))
        assert customer.id is not None
        runs = list(
            await session.scalars(
                sa.select(FlowRun)
                .where(col(FlowRun.customer_id) == customer.id)
                .order_by(col(FlowRun.id).desc())
                .limit(200)
            )
        )
        ids = [r.id for r in runs if r.id is not None]
        steps: dict[int, list[FlowStep]] = {i: [] for i in ids}
        conversions: dict[int, Conversion] = {}
        if ids:
            for step in await session.scalars(
                sa.select(FlowStep).where(col(FlowStep.run_id).in_(ids)).order_by(col(FlowStep.id))
            ):
                steps[step.run_id].append(step)
            for conversion in await session.scalars(
                sa.select(Conversion).where(col(Conversion.run_id).in_(ids))
            ):
                conversions[conversion.run_id] = conversion
    out = CustomerFlows(
        customer_id=customer.id,
        runs=[_run(r, steps.get(r.id or 0, []), conversions.get(r.id or 0)) for r in runs],
    )
    return json_reply(out)


def _run(run: FlowRun, steps: list[FlowStep], conversion: Conversion | None) -> FlowRunOut:
    return FlowRunOut(
        id=run.id or 0,
        flow=run.flow_name,
        version=run.version,
        trigger_key=run.trigger_key,
        status=run.status,
        variant=run.variant,
        holdout=run.holdout,
        next_at=run.next_at,
        goal=run.goal or None,
        started_at=run.started_at,
        ended_at=run.ended_at,
        end_reason=run.end_reason,
        steps=[
            FlowStepOut(
                step=s.step,
                outcome=s.outcome,
                channel=s.channel,
                reason=s.reason,
                delivery_id=s.delivery_id,
                message_id=s.message_id,
                at=s.at,
            )
            for s in steps
        ],
        conversion=None
        if conversion is None
        else ConversionOut(
            step=conversion.step,
            channel=conversion.channel,
            variant=conversion.variant,
            delivery_id=conversion.delivery_id,
            event_id=conversion.event_id,
            amount=conversion.amount,
            currency=conversion.currency,
            at=conversion.at,
        ),
    )


routes = [
    Route(
        "GET",
        r"/api/customers/{id:\d{1,18}}/flows",
        customer_flows,
        "customerFlows",
        "The customer's flow runs (newest first, up to 200) with every step's outcome and reason",
        replies={200: Reply("The runs and their steps", CustomerFlows)},
        errors=(404,),
    ),
]
