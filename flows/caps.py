"""Frequency caps: at most N marketing messages a day and M a week per customer.

Counted across every flow from the run steps that sent a marketing delivery, in
the engine's own clock (the step's `at`). A day is the customer's calendar day
(Braze counts that way, so "2 a day" means what the customer sees); a week is
the last seven days, rolling.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from flows.quiet_hours import next_local_time
from storage.models import Delivery, FlowRun, FlowStep

__all__ = ["CapHit", "Caps"]

WEEK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class CapHit:
    """A cap the next send would break, and when it stops biting."""

    reason: str
    until: datetime


@dataclass(frozen=True, slots=True)
class Caps:
    """The limits; None means no limit of that kind."""

    per_day: int | None = 2
    per_week: int | None = 5

    async def check(
        self,
        session: AsyncSession,
        customer_id: int,
        now: datetime,
        zone: ZoneInfo,
        *,
        times: list[datetime] | None = None,
    ) -> CapHit | None:
        """None when one more marketing message fits, else which cap and until when.

        `times`, when given, are the customer's `sent_times` since a week before `now`.
        """
        if self.per_day is None and self.per_week is None:
            return None
        if times is None:
            times = await sent_times(session, customer_id, since=now - WEEK)
        if self.per_day is not None:
            local_midnight = datetime.combine(now.astimezone(zone).date(), time()).replace(
                tzinfo=zone
            )
            today = [t for t in times if t >= local_midnight]
            if len(today) >= self.per_day:
                return CapHit(
                    f"daily cap: {len(today)} of {self.per_day} marketing messages sent today",
                    next_local_time(now, time(), zone),
                )
        if self.per_week is not None and len(times) >= self.per_week:
            # The week frees up when the oldest send that fills it is seven days old.
            oldest_counted = sorted(times)[len(times) - self.per_week]
            return CapHit(
                f"weekly cap: {len(times)} of {self.per_week} marketing messages in 7 days",
                oldest_counted + WEEK,
            )
        return None


async def sent_times(session: AsyncSession, customer_id: int, *, since: datetime) -> list[datetime]:
    """When the customer's marketing flow messages since `since` were sent."""
    rows = await session.scalars(
        sa.select(col(FlowStep.at))
        .join(FlowRun, col(FlowRun.id) == col(FlowStep.run_id))
        .join(Delivery, col(Delivery.id) == col(FlowStep.delivery_id))
        .where(
            col(FlowRun.customer_id) == customer_id,
            col(FlowStep.outcome) == "sent",
            col(FlowStep.at) >= since,
            col(Delivery.purpose) == "marketing",
        )
    )
    return list(rows)
