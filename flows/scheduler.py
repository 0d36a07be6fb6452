"""Cron fires of scheduled flows: each fire starts a broadcast over the flow's segment.

APScheduler 3.11 (`AsyncIOScheduler`, in-process memory job store) keeps the
timetable: one job per flow whose trigger is `schedule`, built with
`CronTrigger.from_crontab` in the deployment's time zone (CHATGATE_TIMEZONE), its
day-of-week field translated to crontab's numbering (APScheduler 3 counts from
Monday = 0; cron from Sunday = 0). Every process runs the
timetable, but only the scheduler leader acts on a fire. Leadership is a lease
on the broker (`try_lock` with this scheduler as holder: Redis SET NX PX, or the
memory broker's equivalent) renewed every third of its length; a leader that
dies stops renewing and another process takes over within one lease.

A fire's trigger key is its fire time (UTC ISO 8601), and its broadcast is named
after it, so a fire is never run twice: not by a second leader after a lease
changed hands, nor by a restart — the runs' unique (flow, customer, trigger key)
would refuse a second run anyway.

Missed fires: the job store is in memory, so APScheduler itself never sees a fire
that passed while no process was running. The scheduler therefore catches up on
start and whenever it becomes leader, with APScheduler's own semantics made
durable through the broadcast table: `coalesce=True` (of several missed fires
only the latest runs) and `misfire_grace_time` (default one hour: a fire later
than that is dropped — yesterday's "sale starts now" is worse than none). The
same two settings are passed to APScheduler for fires delayed while running.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from flows.broadcasts import Broadcasts
from flows.spec import Flow
from gateway.broker import Broker
from gateway.clock import Clock

__all__ = ["LEADER_LOCK", "FlowScheduler", "cron_trigger", "last_fire"]

log = logging.getLogger("chatgate.flows.scheduler")

LEADER_LOCK = "flows:scheduler-leader"
# Fires looked at when catching up: enough for a cron firing every minute for a day.
_MAX_FIRES = 2000


class ScheduledFlows(Protocol):
    """`flows.loader.FlowSet`, as far as the scheduler uses it."""

    def get(self, name: str) -> Flow | None: ...

    def scheduled(self) -> list[Flow]: ...


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _weekdays(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as APScheduler 3 reads it (0 = Monday).

    APScheduler 3's `from_crontab` passes the field through unchanged (its issue #286),
    so "0 10 * * 1" would fire on Tuesdays. Expanding to day names keeps cron's meaning.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.lower().split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        else:
            low, _, high = span.partition("-")
            first = _day(low)
            last = _day(high) if high else (6 if step_text else first)
            if high and _day(high) == 0 and high.strip() == "7":
                last = 7
        if last < first:  # "sat-sun" wraps around the week
            last += 7
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_DAYS[day] for day in sorted(days))


def _day(text: str) -> int:
    text = text.strip()
    if text.isdigit():
        number = int(text)
        if not 0 <= number <= 7:
            raise ValueError(f"day of week {text!r} is not 0-7")
        return number % 7
    if text[:3] in _DAYS:
        return _DAYS.index(text[:3])
    raise ValueError(f"day of week {text!r} is not a number or a day name")


def cron_trigger(expr: str, timezone: ZoneInfo) -> CronTrigger:
    """`CronTrigger.from_crontab` with crontab's weekday numbering (Sunday is 0 and 7)."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields, not {len(fields)}: {expr!r}")
    fields[4] = _weekdays(fields[4])
    return CronTrigger.from_crontab(" ".join(fields), timezone=timezone)


def last_fire(trigger: CronTrigger, now: datetime, grace: timedelta) -> datetime | None:
    """The latest fire time of `trigger` in (now - grace, now], or None."""
    fire = trigger.get_next_fire_time(None, now - grace)
    latest = None
    for _ in range(_MAX_FIRES):
        if fire is None or fire > now:
            break
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return None if latest is None else latest.astimezone(UTC)


class FlowScheduler:
    """The timetable of scheduled flows; `start()` / `aclose()` like every service."""

    def __init__(
        self,
        flows: ScheduledFlows,
        broadcasts: Broadcasts,
        broker: Broker,
        *,
        clock: Clock,
        timezone: ZoneInfo,
        misfire_grace: timedelta = timedelta(hours=1),
        lease_s: float = 30.0,
        holder: str | None = None,
    ) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self.flows = flows
        self.broadcasts = broadcasts
        self.broker = broker
        self.clock = clock
        self.timezone = timezone
        self.misfire_grace = misfire_grace
        self.lease_s = lease_s
        self.holder = holder or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.leader = False
        self._aps: AsyncIOScheduler | None = None

    def trigger(self, flow: Flow) -> CronTrigger:
        assert flow.trigger.schedule is not None
        return cron_trigger(flow.trigger.schedule, self.timezone)

    # ------------------------------------------------------------ leadership

    async def lead(self) -> bool:
        """Take or renew the leader lease; catch up on missed fires when newly leader."""
        was = self.leader
        self.leader = await self.broker.try_lock(LEADER_LOCK, self.lease_s, holder=self.holder)
        if self.leader and not was:
            log.info("scheduler.leader", extra={"holder": self.holder})
            await self.catch_up()
        elif was and not self.leader:
            log.warning("scheduler.lost_leadership", extra={"holder": self.holder})
        return self.leader

    # ------------------------------------------------------------ fires

    async def fire(self, flow_name: str, at: datetime | None = None) -> int | None:
        """Start the broadcast of one fire; its id, or None when this process is not the
        leader, the fire already ran, or the flow is gone.

        `at` is the fire time; by default the latest one of the flow's cron up to now.
        """
        if not await self.broker.try_lock(LEADER_LOCK, self.lease_s, holder=self.holder):
            self.leader = False
            return None
        self.leader = True
        flow = self.flows.get(flow_name)
        if flow is None or not flow.trigger.schedule:
            return None
        fire_time = at or last_fire(self.trigger(flow), self.clock.now(), self.misfire_grace)
        if fire_time is None:
            return None
        broadcast = await self.broadcasts.create_fire(flow, fire_time)
        if broadcast is None:
            return None
        log.info(
            "scheduler.fired",
            extra={"flow": flow.name, "fire_time": fire_time.isoformat(), "id": broadcast.id},
        )
        return broadcast.id

    async def catch_up(self) -> list[int]:
        """Fire the latest missed fire of each flow, if within the grace time (coalesced)."""
        started = []
        now = self.clock.now()
        for flow in self.flows.scheduled():
            fire_time = last_fire(self.trigger(flow), now, self.misfire_grace)
            if fire_time is not None:
                broadcast_id = await self.fire(flow.name, fire_time)
                if broadcast_id is not None:
                    started.append(broadcast_id)
        return started

    # ------------------------------------------------------------ lifecycle

    def jobs(self) -> Sequence[tuple[str, datetime | None]]:
        """(job id, next run time) of the timetable, for operators and tests."""
        if self._aps is None:
            return []
        return [(job.id, job.next_run_time) for job in self._aps.get_jobs()]

    async def start(self) -> None:
        grace = int(self.misfire_grace.total_seconds())
        self._aps = AsyncIOScheduler(
            timezone=self.timezone,
            job_defaults={"coalesce": True, "misfire_grace_time": grace, "max_instances": 1},
        )
        for flow in self.flows.scheduled():
            self._aps.add_job(
                self.fire, self.trigger(flow), args=[flow.name], id=f"flow:{flow.name}"
            )
        self._aps.add_job(
            self.lead, IntervalTrigger(seconds=max(self.lease_s / 3, 0.1)), id="leader"
        )
        self._aps.start()
        await self.lead()

    async def aclose(self) -> None:
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
        if self.leader:
            # Hand over at once rather than after the lease runs out.
            await self.broker.release(LEADER_LOCK, holder=self.holder)
            self.leader = False
