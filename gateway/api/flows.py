"""`GET /api/flows` and `GET /api/flows/{name}/stats`: what runs, and how well it does."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web
from pydantic import BaseModel, Field

from flows.spec import Flow
from flows.stats import Counts, FlowStats, Rate, Stats
from gateway.api.errors import ApiError
from gateway.api.replies import json_reply
from gateway.api.routes import Reply, Route
from gateway.api.state import DATABASE

__all__ = ["FLOWS", "FlowList", "FlowStatsOut", "FlowsView", "routes"]


class FlowsView(Protocol):
    """`flows.loader.FlowSet`, as far as the API reads it."""

    flows: dict[str, Flow]


# The parent application holds the loaded flows when CHATGATE_FLOWS_DIR is set.
FLOWS = web.AppKey("chatgate_flows", FlowsView)


class TriggerOut(BaseModel):
    event: str | None = Field(description="The event type that starts a run.")
    schedule: str | None = Field(description="A cron expression (5 fields) for broadcasts.")
    segment: str | None = Field(description="The audience; alone, runs start on entering it.")


class FlowOut(BaseModel):
    name: str
    version: str = Field(description="The hash of the file and its templates.")
    description: str
    purpose: str = Field(description="marketing or transactional.")
    priority: int
    trigger: TriggerOut
    active_runs: int = Field(description="Runs still going (status active).")
    total_runs: int
    runs: dict[str, int] = Field(description="Every run of the flow by status.")


class FlowList(BaseModel):
    flows: list[FlowOut]


class CountsOut(BaseModel):
    entered: int
    sent: int
    delivered: int
    read: int
    clicked: int
    replied: int
    converted: int
    revenue: str = Field(description="The sum of the conversions' amounts, as a decimal.")
    unsubscribed: int
    failed: int

    @classmethod
    def of(cls, counts: Counts) -> CountsOut:
        return cls.model_validate(counts.as_json())


class StepOut(CountsOut):
    step: str
    channel: str | None
    variant: str | None


class RateOut(BaseModel):
    variant: str = Field(description='A variant of the split, or "holdout".')
    runs: int
    conversions: int
    rate: float = Field(description="conversions / runs.")
    ci_low: float = Field(description="Lower end of the 95% Wilson interval.")
    ci_high: float = Field(description="Upper end of the 95% Wilson interval.")
    lift: float | None = Field(description="(rate - holdout rate) / holdout rate.")

    @classmethod
    def of(cls, rate: Rate) -> RateOut:
        return cls(
            variant=rate.variant,
            runs=rate.runs,
            conversions=rate.conversions,
            rate=round(rate.rate, 6),
            ci_low=round(rate.low, 6),
            ci_high=round(rate.high, 6),
            lift=None if rate.lift is None else round(rate.lift, 6),
        )


class FlowStatsOut(BaseModel):
    flow: str
    runs: dict[str, int]
    totals: CountsOut
    steps: list[StepOut] = Field(description="Per step, channel and variant.")
    variants: list[RateOut] = Field(description="A/B results with 95% confidence intervals.")
    holdout: RateOut | None

    @classmethod
    def of(cls, stats: FlowStats) -> FlowStatsOut:
        return cls(
            flow=stats.flow,
            runs=stats.runs,
            totals=CountsOut.of(stats.totals),
            steps=[
                StepOut(
                    step=row.step,
                    channel=row.channel,
                    variant=row.variant,
                    **row.counts.as_json(),
                )
                for row in stats.steps
            ],
            variants=[RateOut.of(v) for v in stats.variants],
            holdout=RateOut.of(stats.holdout) if stats.holdout else None,
        )


def _flows(request: web.Request) -> dict[str, Flow]:
    view = request.config_dict.get(FLOWS)
    return {} if view is None else view.flows


async def list_flows(request: web.Request) -> web.Response:
    summaries = await Stats(request.config_dict[DATABASE]).summaries()
    out = []
    for name, flow in sorted(_flows(request).items()):
        runs = summaries[name].runs if name in summaries else {}
        out.append(
            FlowOut(
                name=name,
                version=flow.version,
                description=flow.description,
                purpose=flow.purpose,
                priority=flow.priority,
                trigger=TriggerOut(
                    event=flow.trigger.event,
                    schedule=flow.trigger.schedule,
                    segment=flow.trigger.segment,
                ),
                active_runs=runs.get("active", 0),
                total_runs=sum(runs.values()),
                runs=runs,
            )
        )
    return json_reply(FlowList(flows=out))


async def flow_stats(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    stats = await Stats(request.config_dict[DATABASE]).flow(name)
    if not stats.runs and name not in _flows(request):
        raise ApiError(404, "not_found", f"no flow named {name!r}")
    return json_reply(FlowStatsOut.of(stats))


routes = [
    Route(
        "GET",
        "/api/flows",
        list_flows,
        "listFlows",
        "The flows of the flows folder, with their triggers and runs by status",
        replies={200: Reply("Every loaded flow", FlowList)},
        tags=("flows",),
    ),
    Route(
        "GET",
        "/api/flows/{name:[A-Za-z0-9_.-]{1,100}}/stats",
        flow_stats,
        "getFlowStats",
        "A flow's funnel per step, channel and variant, and its A/B results",
        replies={200: Reply("The flow's statistics", FlowStatsOut)},
        errors=(401, 404),
        tags=("flows",),
    ),
]
