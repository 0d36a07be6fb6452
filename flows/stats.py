"""A flow's funnel and its A/B results, counted by the database.

Every figure is one SQL aggregate over `flow_run`, `flow_step`, `delivery`,
`conversion` and `consent`: a flow with a million runs is counted where the rows
are, never loaded into Python.

What each count means (per step, channel and variant):

- entered: runs that reached the step on that channel (any outcome, skips included)
- sent: messages handed to the outbox (`flow_step.outcome = 'sent'`)
- delivered / read / clicked / replied: sent messages whose delivery got that far
  (a read, click or reply implies delivered; machine opens never set `read_at`)
- failed: failed steps and sent messages whose delivery failed, each counted once
- unsubscribed: sent messages after which the customer withdrew marketing consent
  on that channel (or on every channel)
- converted / revenue: conversions credited to the step, with the sum of their
  events' `amount` (amounts are summed as given; one currency per shop is assumed)

A/B: each variant's conversion rate over its runs with a 95% Wilson interval,
and the holdout's rate, so lift can be read against doing nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.models import Consent, Conversion, Delivery, FlowRun, FlowStep

__all__ = [
    "Counts",
    "FlowStats",
    "FlowSummary",
    "Rate",
    "Stats",
    "StepStats",
    "money",
    "render_stats",
    "wilson",
]

# The 97.5th percentile of the standard normal: a two-sided 95% interval.
Z_95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion: sound at small n and at 0% or 100%."""
    if trials <= 0:
        return (0.0, 0.0)
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes out of {trials} trials")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True, slots=True)
class Counts:
    entered: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    clicked: int = 0
    replied: int = 0
    converted: int = 0
    revenue: Decimal = Decimal(0)
    unsubscribed: int = 0
    failed: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "entered": self.entered,
            "sent": self.sent,
            "delivered": self.delivered,
            "read": self.read,
            "clicked": self.clicked,
            "replied": self.replied,
            "converted": self.converted,
            "revenue": money(self.revenue),
            "unsubscribed": self.unsubscribed,
            "failed": self.failed,
        }


@dataclass(frozen=True, slots=True)
class StepStats:
    step: str
    channel: str | None
    variant: str | None
    counts: Counts


@dataclass(frozen=True, slots=True)
class Rate:
    """One arm of an experiment: its runs, conversions, rate and 95% interval."""

    variant: str  # "holdout" for the control group
    runs: int
    conversions: int
    rate: float
    low: float
    high: float
    lift: float | None = None  # relative to the holdout's rate, when there is one

    @classmethod
    def of(cls, variant: str, runs: int, conversions: int) -> Rate:
        low, high = wilson(conversions, runs)
        rate = conversions / runs if runs else 0.0
        return cls(variant, runs, conversions, rate, low, high)


@dataclass(frozen=True, slots=True)
class FlowStats:
    flow: str
    runs: dict[str, int]  # status -> count
    totals: Counts
    steps: list[StepStats] = field(default_factory=list)
    variants: list[Rate] = field(default_factory=list)
    holdout: Rate | None = None


@dataclass(frozen=True, slots=True)
class FlowSummary:
    """What `GET /api/flows` shows of a flow's runs."""

    runs: dict[str, int]

    @property
    def active(self) -> int:
        return self.runs.get("active", 0)

    @property
    def total(self) -> int:
        return sum(self.runs.values())


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


class Stats:
    """Reads flow statistics from the store."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def summaries(self) -> dict[str, FlowSummary]:
        """Runs per status for every flow that has any, in one grouped query."""
        query = sa.select(col(FlowRun.flow_name), col(FlowRun.status), sa.func.count()).group_by(
            col(FlowRun.flow_name), col(FlowRun.status)
        )
        runs: dict[str, dict[str, int]] = {}
        async with self.db.session() as session:
            for name, status, count in await session.execute(query):
                runs.setdefault(name, {})[status] = int(count)
        return {name: FlowSummary(by_status) for name, by_status in runs.items()}

    async def flow(self, name: str) -> FlowStats:
        """The funnel of `name`, per step, channel and variant, and its A/B results."""
        async with self.db.session() as session:
            runs = await _runs(session, name)
            steps = await _steps(session, name)
            conversions = await _conversions(session, name)
            arms = await _arms(session, name)
        rows: list[StepStats] = []
        for key, counts in steps.items():
            converted, revenue = conversions.pop(key, (0, Decimal(0)))
            rows.append(StepStats(*key, counts=_with(counts, converted, revenue)))
        for key, (converted, revenue) in conversions.items():
            # Credited to a step that left no flow_step row (an old version's step).
            rows.append(StepStats(*key, counts=_with(Counts(), converted, revenue)))
        rows.sort(key=lambda r: (r.step, r.channel or "", r.variant or ""))
        total_converted = sum(r.counts.converted for r in rows)
        totals = Counts(
            entered=sum(runs.values()),
            sent=sum(r.counts.sent for r in rows),
            delivered=sum(r.counts.delivered for r in rows),
            read=sum(r.counts.read for r in rows),
            clicked=sum(r.counts.clicked for r in rows),
            replied=sum(r.counts.replied for r in rows),
            converted=total_converted,
            revenue=sum((r.counts.revenue for r in rows), Decimal(0)),
            unsubscribed=sum(r.counts.unsubscribed for r in rows),
            failed=sum(r.counts.failed for r in rows),
        )
        holdout = arms.pop(None, None)
        control = Rate.of("holdout", *holdout) if holdout else None
        variants = []
        for variant, (count, converted) in sorted((k or "", v) for k, v in arms.items()):
            rate = Rate.of(variant, count, converted)
            if control is not None and control.rate > 0:
                rate = _lift(rate, (rate.rate - control.rate) / control.rate)
            variants.append(rate)
        return FlowStats(name, runs, totals, rows, variants, control)


def _with(counts: Counts, converted: int, revenue: Decimal) -> Counts:
    values = {name: getattr(counts, name) for name in Counts.__slots__}
    values.update(converted=converted, revenue=revenue)
    return Counts(**values)


def _lift(rate: Rate, lift: float) -> Rate:
    return Rate(rate.variant, rate.runs, rate.conversions, rate.rate, rate.low, rate.high, lift)


async def _runs(session: AsyncSession, name: str) -> dict[str, int]:
    query = (
        sa.select(col(FlowRun.status), sa.func.count())
        .where(col(FlowRun.flow_name) == name)
        .group_by(col(FlowRun.status))
    )
    return {status: int(count) for status, count in await session.execute(query)}


StepKey = tuple[str, str | None, str | None]


async def _steps(session: AsyncSession, name: str) -> dict[StepKey, Counts]:
    sent = col(FlowStep.outcome) == "sent"
    reached = sa.func.coalesce(
        col(Delivery.delivered_at),
        col(Delivery.read_at),
        col(Delivery.clicked_at),
        col(Delivery.replied_at),
    )
    withdrawn = (
        sa.exists()
        .where(
            col(Consent.customer_id) == col(Delivery.customer_id),
            col(Consent.channel).in_([col(Delivery.channel), "*"]),
            col(Consent.purpose) == "marketing",
            col(Consent.granted).is_(False),
            col(Consent.updated_at) >= col(Delivery.sent_at),
        )
        .correlate(Delivery)
    )
    failed = sa.or_(col(FlowStep.outcome) == "failed", col(Delivery.status) == "failed")
    # A failed delivery may have both its 'sent' and a 'failed' step row: count it once.
    failed_key = sa.case((failed, sa.func.coalesce(col(Delivery.id), -col(FlowStep.id))))
    query = (
        sa.select(
            col(FlowStep.step),
            col(FlowStep.channel),
            col(FlowStep.variant),
            sa.func.count(sa.distinct(col(FlowStep.run_id))),
            _count_if(sent),
            _count_if(sa.and_(sent, reached.is_not(None))),
            _count_if(sa.and_(sent, col(Delivery.read_at).is_not(None))),
            _count_if(sa.and_(sent, col(Delivery.clicked_at).is_not(None))),
            _count_if(sa.and_(sent, col(Delivery.replied_at).is_not(None))),
            _count_if(sa.and_(sent, col(Delivery.sent_at).is_not(None), withdrawn)),
            sa.func.count(sa.distinct(failed_key)),
        )
        .select_from(FlowStep)
        .outerjoin(Delivery, col(Delivery.id) == col(FlowStep.delivery_id))
        .where(col(FlowStep.flow_name) == name)
        .group_by(col(FlowStep.step), col(FlowStep.channel), col(FlowStep.variant))
    )
    out: dict[StepKey, Counts] = {}
    for step, channel, variant, *n in await session.execute(query):
        out[(step, channel, variant)] = Counts(
            entered=int(n[0]),
            sent=int(n[1]),
            delivered=int(n[2]),
            read=int(n[3]),
            clicked=int(n[4]),
            replied=int(n[5]),
            unsubscribed=int(n[6]),
            failed=int(n[7]),
        )
    return out


async def _conversions(session: AsyncSession, name: str) -> dict[StepKey, tuple[int, Decimal]]:
    query = (
        sa.select(
            col(Conversion.step),
            col(Conversion.channel),
            col(Conversion.variant),
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(col(Conversion.amount)), 0),
        )
        .join(FlowRun, col(FlowRun.id) == col(Conversion.run_id))
        # The holdout's conversions are the baseline, not the flow's doing.
        .where(col(Conversion.flow_name) == name, col(FlowRun.holdout).is_(False))
        .group_by(col(Conversion.step), col(Conversion.channel), col(Conversion.variant))
    )
    return {
        (step or "", channel, variant): (int(count), Decimal(str(revenue)))
        for step, channel, variant, count, revenue in await session.execute(query)
    }


async def _arms(session: AsyncSession, name: str) -> dict[str | None, tuple[int, int]]:
    """(runs, conversions) per variant; the key None is the holdout group."""
    query = (
        sa.select(
            col(FlowRun.holdout),
            col(FlowRun.variant),
            sa.func.count(),
            sa.func.count(col(Conversion.id)),
        )
        .select_from(FlowRun)
        .outerjoin(Conversion, col(Conversion.run_id) == col(FlowRun.id))
        .where(
            col(FlowRun.flow_name) == name,
            sa.or_(col(FlowRun.holdout).is_(True), col(FlowRun.variant).is_not(None)),
        )
        .group_by(col(FlowRun.holdout), col(FlowRun.variant))
    )
    out: dict[str | None, tuple[int, int]] = {}
    for holdout, variant, runs, converted in await session.execute(query):
        key = None if holdout else variant
        before = out.get(key, (0, 0))
        out[key] = (before[0] + int(runs), before[1] + int(converted))
    return out


def money(value: Decimal) -> str:
    """A sum as people write it: 150.5, not 150.5000 or 1.505E+2."""
    return f"{value.normalize():f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def render_stats(stats: FlowStats) -> str:
    """The funnel and the A/B table as plain text, for `chatgate flows stats NAME`."""
    runs = ", ".join(f"{status} {count}" for status, count in sorted(stats.runs.items()))
    lines = [f"flow {stats.flow}: {stats.totals.entered} runs ({runs})", ""]
    header = [
        "step",
        "channel",
        "variant",
        "entered",
        "sent",
        "delivered",
        "read",
        "clicked",
        "replied",
        "converted",
        "revenue",
        "unsub",
        "failed",
    ]

    def cells(counts: Counts) -> list[str]:
        return [
            str(counts.entered),
            str(counts.sent),
            str(counts.delivered),
            str(counts.read),
            str(counts.clicked),
            str(counts.replied),
            str(counts.converted),
            money(counts.revenue),
            str(counts.unsubscribed),
            str(counts.failed),
        ]

    rows = [
        [r.step or "-", r.channel or "-", r.variant or "-", *cells(r.counts)] for r in stats.steps
    ]
    rows.append(["total", "-", "-", *cells(stats.totals)])
    lines += _table(header, rows)
    arms = [*stats.variants, *([stats.holdout] if stats.holdout else [])]
    if arms:
        lines.append("")
        lines += _table(
            ["variant", "runs", "conversions", "rate", "95% CI", "lift"],
            [
                [
                    arm.variant,
                    str(arm.runs),
                    str(arm.conversions),
                    _percent(arm.rate),
                    f"{_percent(arm.low)}-{_percent(arm.high)}",
                    "-" if arm.lift is None else f"{arm.lift * 100:+.1f}%",
                ]
                for arm in arms
            ],
        )
    return "\n".join(lines)
