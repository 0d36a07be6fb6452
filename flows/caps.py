"""Frequency caps: at most N marketing messages a day and M a week per customer.

Counted across every flow from the run steps that sent a marketing delivery, in
the engine's own clock (the step's `at`). A day is the customer's calendar day
(Braze counts that way, so "2 a day" means what the customer sees); a week is
the last seven days, rolling.

Priority reserves the last slot: a send may not take the last free slot of a
window while a run of a higher-priority flow of the same customer is due before
that slot comes back (a promo at 10:00 does not use up the day the cart nudge
due at 11:00 needs). The send waits until just after that run is due, and by
then the slot is either taken or still free for it.
"""

from __future__ import annotations

from collections.abc import Sequence
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
# A send that gave way to a higher-priority run looks again this long after that run was due.
AFTER_OUTRANKING = timedelta(minutes=1)


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
        outranked_by: Sequence[str] = (),
    ) -> CapHit | None:
        """None when one more marketing message fits, else which cap and until when.

        `times`, when given, are the customer's `sent_times` since a week before `now`;
        `outranked_by` names the flows of a higher priority than the sending one.
        """
        if self.per_day is None and self.per_week is None:
            return None
        if times is None:
            times = await sent_times(session, customer_id, since=now - WEEK)
        today = _today(times, now, zone)
        if self.per_day is not None and len(today) >= self.per_day:
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
        back = self._last_slot_back(times, today, now, zone)
        if back is None or not outranked_by:
            return None
        due = await _first_due(session, customer_id, outranked_by, before=back)
        if due is None:
            return None
        return CapHit(
            f"the last marketing slot until {back.isoformat()} is kept for a higher-priority"
            " flow due before then",
            max(due, now) + AFTER_OUTRANKING,
        )

    def _last_slot_back(
        self, times: list[datetime], today: list[datetime], now: datetime, zone: ZoneInfo
    ) -> datetime | None:
        """If one more send fills a cap: when a slot comes back after it; else None."""
        back = []
        if self.per_day is not None and len(today) == self.per_day - 1:
            back.append(next_local_time(now, time(), zone))
        if self.per_week is not None and len(times) == self.per_week - 1:
            back.append(min(times, default=now) + WEEK)
        return max(back, default=None)


def _today(times: list[datetime], now: datetime, zone: ZoneInfo) -> list[datetime]:
    """The sends of the customer's calendar day of `now`."""
    local_midnight = datetime.combine(now.astimezone(zone).date(), time()).replace(tzinfo=zone)
    return [t for t in times if t >= local_midnight]


async def _first_due(
    session: AsyncSession, customer_id: int, flow_names: Sequence[str], *, before: datetime
) -> datetime | None:
    """When the customer's first active run of `flow_names` due before `before` is due."""
    due: datetime | None = await session.scalar(
        sa.select(sa.func.min(col(FlowRun.next_at))).where(
            col(FlowRun.customer_id) == customer_id,
            col(FlowRun.status) == "active",
            col(FlowRun.flow_name).in_(list(flow_names)),
            col(FlowRun.next_at) < before,
        )
    )
    return due


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
