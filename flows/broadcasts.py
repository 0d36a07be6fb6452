"""Broadcasts: one flow started for a whole segment, planned in batches.

A broadcast walks its segment's query by customer id (keyset: `id > cursor
LIMIT batch`), starting a run per customer through `FlowEngine.start_runs` and
saving the cursor in the same transaction. The audience is never loaded whole,
and a restart resumes planning at the cursor; the runs' unique trigger key
makes a batch replayed after a crash start nobody twice.

Statuses: `planning` (batches still to start) → `running` (every recipient has
a run) → `done` (no run of it is live any more). `paused` plans nothing and
holds the broadcast's live runs: they are leased to the broadcast itself
(`claimed_by = "broadcast:<id>"`, `claimed_until` far away), which the engine's
claim query passes over, so nothing new is sent; `resume` gives them back with
their own due times. `cancelled` ends every live run with a reason and takes
back the messages of its runs still waiting in the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from flows.segments import Segment, SegmentError, parse_segment
from flows.spec import Flow
from gateway.clock import Clock
from gateway.repeating import Repeating
from storage.db import Database
from storage.inserts import dialect_name
from storage.models import Broadcast, Customer, Delivery, DeliveryStatus, FlowRun, FlowStep

__all__ = [
    "BroadcastError",
    "BroadcastState",
    "Broadcasts",
    "Progress",
    "RunStarter",
    "read_progress",
    "render_progress",
    "trigger_key",
]

log = logging.getLogger("chatgate.flows.broadcasts")

BATCH = 1000
LIVE = ("active", "holdout")
# A lease nobody reaches: the engine's claim query skips a run held until then.
HELD_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
SCHEDULE_PREFIX = "schedule:"


class BroadcastState:
    planning = "planning"
    running = "running"
    paused = "paused"
    cancelled = "cancelled"
    done = "done"


class RunStarter(Protocol):
    """`flows.engine.FlowEngine`, as far as broadcasts use it."""

    async def start_runs(
        self,
        session: AsyncSession,
        flow: Flow,
        customer_ids: Sequence[int],
        *,
        trigger_key: str,
        context: dict[str, Any],
        broadcast_id: int | None = None,
    ) -> int: ...


class FlowLookup(Protocol):
    """`flows.loader.FlowSet`, as far as broadcasts use it."""

    def get(self, name: str) -> Flow | None: ...


class BroadcastError(ValueError):
    """A broadcast cannot be made or changed; `field` names the culprit."""

    def __init__(self, field: str, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a broadcast is: recipients planned, runs by status, messages by status."""

    id: int
    name: str
    flow: str
    segment: str
    status: str
    planned: int
    total: int | None
    runs: dict[str, int] = field(default_factory=dict)
    sent: int = 0  # runs that have sent at least one message
    pending: int = 0  # live runs that have not sent anything yet
    deliveries: dict[str, int] = field(default_factory=dict)
    created_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def fraction(self) -> float:
        """How much of the audience has been planned, 0..1."""
        if self.status == BroadcastState.done:
            return 1.0
        if not self.total:
            return 1.0 if self.status != BroadcastState.planning else 0.0
        return min(1.0, self.planned / self.total)


def trigger_key(broadcast: Broadcast) -> str:
    """The runs' trigger key: the fire time for a scheduled fire, else the broadcast."""
    if broadcast.name.startswith(SCHEDULE_PREFIX):
        return broadcast.name.removeprefix(SCHEDULE_PREFIX)
    return f"broadcast:{broadcast.id}"


def _context(broadcast: Broadcast, now: datetime) -> dict[str, Any]:
    """What templates see as `event` in a broadcast's runs."""
    return {
        "event": {
            "id": None,
            "type": "broadcast",
            "data": {"broadcast_id": broadcast.id, "name": broadcast.name},
            "occurred_at": now.isoformat(),
        }
    }


class Broadcasts:
    """Creates, plans, pauses, resumes and cancels broadcasts; reports their progress."""

    def __init__(
        self,
        db: Database,
        engine: RunStarter,
        flows: FlowLookup,
        *,
        clock: Clock,
        batch: int = BATCH,
        poll_s: float = 5.0,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.db = db
        self.engine = engine
        self.flows = flows
        self.clock = clock
        self.batch = batch
        self.poll_s = poll_s
        self._loop = Repeating(
            "broadcasts",
            self._work_found,
            pause=lambda: clock.sleep(poll_s),
            log=log,
            failed_event="broadcasts.loop_failed",
        )

    # ------------------------------------------------------------ create

    def _flow(self, name: str) -> Flow:
        flow = self.flows.get(name)
        if flow is None:
            raise BroadcastError("flow", f"no flow named {name!r}", status=404)
        return flow

    def audience(self, flow: Flow, segment: str | None) -> tuple[str, Segment]:
        """The segment text and its parse; the flow's own when none is given."""
        text = (segment if segment is not None else flow.trigger.segment or "").strip()
        if not text:
            raise BroadcastError(
                "segment", f"flow {flow.name!r} has no segment of its own; give one"
            )
        try:
            return text, parse_segment(text)
        except SegmentError as exc:
            raise BroadcastError("segment", str(exc)) from exc

    async def create(
        self, *, flow: str, segment: str | None = None, name: str | None = None
    ) -> Broadcast:
        """A broadcast of `flow` to `segment`, counted and ready to plan."""
        if name is not None and name.startswith(SCHEDULE_PREFIX):
            raise BroadcastError("name", f"names starting with {SCHEDULE_PREFIX!r} are reserved")
        compiled = self._flow(flow)
        text, parsed = self.audience(compiled, segment)
        now = self.clock.now()
        async with self.db.session() as session:
            return await self._insert(session, compiled, text, parsed, name or flow, now)

    async def create_fire(self, flow: Flow, fire_time: datetime) -> Broadcast | None:
        """The broadcast of one cron fire, or None when that fire already has one."""
        text, parsed = self.audience(flow, None)
        name = f"{SCHEDULE_PREFIX}{fire_time.astimezone(UTC).isoformat()}"
        async with self.db.session() as session:
            exists = await session.scalar(
                sa.select(col(Broadcast.id)).where(
                    col(Broadcast.flow_name) == flow.name, col(Broadcast.name) == name
                )
            )
            if exists is not None:
                return None
            return await self._insert(session, flow, text, parsed, name, self.clock.now())

    async def _insert(
        self,
        session: AsyncSession,
        flow: Flow,
        text: str,
        segment: Segment,
        name: str,
        now: datetime,
    ) -> Broadcast:
        audience = segment.select_ids(now).order_by(None).subquery()
        total = await session.scalar(sa.select(sa.func.count()).select_from(audience))
        broadcast = Broadcast(
            name=name[:200],
            flow_name=flow.name,
            segment=text,
            status=BroadcastState.planning,
            total=int(total or 0),
            created_at=now,
            updated_at=now,
        )
        session.add(broadcast)
        await session.flush()
        log.info(
            "broadcast.created",
            extra={"broadcast": broadcast.id, "flow": flow.name, "total": broadcast.total},
        )
        return broadcast

    # ------------------------------------------------------------ planning

    async def plan_batch(self, broadcast_id: int) -> bool:
        """Start runs for the next batch of the audience; False when nothing is left to plan.

        The batch's runs, the cursor and the count commit together, so a crash
        loses nothing and repeats nothing.
        """
        async with self.db.session() as session:
            broadcast = await _locked(session, broadcast_id)
            if broadcast is None or broadcast.status != BroadcastState.planning:
                return False
            flow = self.flows.get(broadcast.flow_name)
            now = self.clock.now()
            if flow is None:
                # The flow file was removed: stop here rather than guess.
                _finish(broadcast, BroadcastState.cancelled, now)
                log.warning("broadcast.flow_missing", extra={"broadcast": broadcast_id})
                return False
            try:
                segment = parse_segment(broadcast.segment)
            except SegmentError:
                # Checked when created; only a change of the language can get here.
                _finish(broadcast, BroadcastState.cancelled, now)
                log.exception("broadcast.segment_invalid", extra={"broadcast": broadcast_id})
                return False
            query = segment.select_ids(now).limit(self.batch)
            if broadcast.cursor is not None:
                query = query.where(col(Customer.id) > broadcast.cursor)
            ids = [int(i) for i in await session.scalars(query)]
            if ids:
                await self.engine.start_runs(
                    session,
                    flow,
                    ids,
                    trigger_key=trigger_key(broadcast),
                    context=_context(broadcast, now),
                    broadcast_id=broadcast_id,
                )
                broadcast.planned += len(ids)
                broadcast.cursor = ids[-1]
            broadcast.updated_at = now
            if len(ids) < self.batch:
                broadcast.status = BroadcastState.running
                broadcast.total = broadcast.planned  # the audience as it turned out
                return False
            return True

    async def plan(self, broadcast_id: int, *, max_batches: int | None = None) -> int:
        """Plan batch after batch until done, paused or cancelled; how many batches ran."""
        batches = 0
        while max_batches is None or batches < max_batches:
            more = await self.plan_batch(broadcast_id)
            batches += 1
            if not more:
                break
        return batches

    async def work(self) -> int:
        """One pass of the background loop: a batch of every planning broadcast, then
        mark the running ones whose runs have all ended as done. How many batches ran."""
        async with self.db.session() as session:
            rows = list(
                await session.execute(
                    sa.select(col(Broadcast.id), col(Broadcast.status))
                    .where(
                        col(Broadcast.status).in_([BroadcastState.planning, BroadcastState.running])
                    )
                    .order_by(col(Broadcast.id))
                )
            )
        planning = [i for i, status in rows if status == BroadcastState.planning and i]
        for broadcast_id in planning:
            await self.plan_batch(broadcast_id)
        if rows:  # an idle loop only reads: no UPDATE while nothing is in flight
            await self.finish_done()
        return len(planning)

    async def finish_done(self) -> int:
        """Running broadcasts without a live run are done; how many finished."""
        now = self.clock.now()
        live = (
            sa.select(col(FlowRun.id))
            .where(col(FlowRun.broadcast_id) == col(Broadcast.id), _live())
            .exists()
        )
        async with self.db.session() as session:
            result = await session.execute(
                sa.update(Broadcast)
                .where(col(Broadcast.status) == BroadcastState.running, ~live)
                .values(status=BroadcastState.done, finished_at=now, updated_at=now)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    # ------------------------------------------------------------ control

    async def pause(self, broadcast_id: int) -> Broadcast:
        """Plan nothing more and hold every live run of the broadcast."""
        holder = f"broadcast:{broadcast_id}"
        async with self.db.session() as session:
            broadcast = await self._changeable(session, broadcast_id, "pause")
            if broadcast.status == BroadcastState.paused:
                return broadcast
            now = self.clock.now()
            # Where to go back to on resume: planning resumes at the cursor.
            broadcast.status = BroadcastState.paused
            broadcast.updated_at = now
            await session.execute(
                sa.update(FlowRun)
                .where(col(FlowRun.broadcast_id) == broadcast_id, _live())
                .values(claimed_by=holder, claimed_until=HELD_UNTIL)
            )
            return broadcast

    async def resume(self, broadcast_id: int) -> Broadcast:
        """Give the held runs back to the engine and carry on planning where it stopped."""
        holder = f"broadcast:{broadcast_id}"
        async with self.db.session() as session:
            broadcast = await self._changeable(session, broadcast_id, "resume")
            if broadcast.status != BroadcastState.paused:
                return broadcast
            now = self.clock.now()
            finished = broadcast.total is not None and broadcast.planned >= broadcast.total
            broadcast.status = (
                BroadcastState.running
                if finished and broadcast.cursor is not None
                else BroadcastState.planning
            )
            broadcast.updated_at = now
            await session.execute(
                sa.update(FlowRun)
                .where(col(FlowRun.broadcast_id) == broadcast_id, col(FlowRun.claimed_by) == holder)
                .values(claimed_by=None, claimed_until=None)
            )
            return broadcast

    async def cancel(self, broadcast_id: int) -> Broadcast:
        """End every live run with a reason and take back its messages still queued."""
        async with self.db.session() as session:
            broadcast = await self._changeable(session, broadcast_id, "cancel")
            now = self.clock.now()
            reason = f"broadcast {broadcast_id} cancelled"
            # Every run of it, ended ones too: a run whose last step sent is done,
            # while its message may still wait in the outbox.
            runs = sa.select(col(FlowRun.id)).where(col(FlowRun.broadcast_id) == broadcast_id)
            queued = sa.select(col(FlowStep.delivery_id)).where(
                col(FlowStep.run_id).in_(runs), col(FlowStep.delivery_id).is_not(None)
            )
            await session.execute(
                sa.update(Delivery)
                .where(col(Delivery.id).in_(queued), col(Delivery.status) == DeliveryStatus.queued)
                .values(
                    status=DeliveryStatus.failed,
                    final=True,
                    error=reason,
                    failed_at=now,
                    updated_at=now,
                )
            )
            await session.execute(
                sa.update(FlowRun)
                .where(col(FlowRun.broadcast_id) == broadcast_id, _live())
                .values(
                    status="cancelled",
                    ended_at=now,
                    end_reason=reason,
                    next_at=None,
                    claimed_by=None,
                    claimed_until=None,
                    updated_at=now,
                )
            )
            _finish(broadcast, BroadcastState.cancelled, now)
            return broadcast

    async def _changeable(self, session: AsyncSession, broadcast_id: int, verb: str) -> Broadcast:
        broadcast = await _locked(session, broadcast_id)
        if broadcast is None:
            raise BroadcastError("id", f"no broadcast {broadcast_id}", status=404)
        if broadcast.status in (BroadcastState.cancelled, BroadcastState.done):
            raise BroadcastError(
                "status",
                f"broadcast {broadcast_id} is {broadcast.status}; cannot {verb}",
                status=409,
            )
        return broadcast

    # ------------------------------------------------------------ progress

    async def progress(self, broadcast_id: int) -> Progress | None:
        """The broadcast's figures; None when there is none."""
        return await read_progress(self.db, broadcast_id)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop.start()

    async def aclose(self) -> None:
        await self._loop.aclose()

    async def _work_found(self) -> bool:
        return await self.work() > 0


async def read_progress(db: Database, broadcast_id: int) -> Progress | None:
    """The broadcast's figures from three grouped queries; None when there is none."""
    async with db.session() as session:
        broadcast = await session.get(Broadcast, broadcast_id)
        if broadcast is None:
            return None
        runs = {
            status: int(count)
            for status, count in await session.execute(
                sa.select(col(FlowRun.status), sa.func.count())
                .where(col(FlowRun.broadcast_id) == broadcast_id)
                .group_by(col(FlowRun.status))
            )
        }
        has_sent = (
            sa.select(col(FlowStep.id))
            .where(col(FlowStep.run_id) == col(FlowRun.id), col(FlowStep.outcome) == "sent")
            .exists()
        )
        sent_row = (
            await session.execute(
                sa.select(
                    sa.func.count().filter(has_sent),
                    sa.func.count().filter(~has_sent, _live()),
                ).where(col(FlowRun.broadcast_id) == broadcast_id)
            )
        ).one()
        deliveries = {
            status: int(count)
            for status, count in await session.execute(
                sa.select(col(Delivery.status), sa.func.count(sa.distinct(col(Delivery.id))))
                .select_from(FlowStep)
                .join(FlowRun, col(FlowRun.id) == col(FlowStep.run_id))
                .join(Delivery, col(Delivery.id) == col(FlowStep.delivery_id))
                .where(col(FlowRun.broadcast_id) == broadcast_id)
                .group_by(col(Delivery.status))
            )
        }
    assert broadcast.id is not None
    return Progress(
        id=broadcast.id,
        name=broadcast.name,
        flow=broadcast.flow_name,
        segment=broadcast.segment,
        status=broadcast.status,
        planned=broadcast.planned,
        total=broadcast.total,
        runs=runs,
        sent=int(sent_row[0] or 0),
        pending=int(sent_row[1] or 0),
        deliveries=deliveries,
        created_at=broadcast.created_at,
        finished_at=broadcast.finished_at,
    )


def _live() -> sa.ColumnElement[bool]:
    """Runs still going: active, or holdout still watched for the goal (not yet ended)."""
    return sa.and_(col(FlowRun.status).in_(LIVE), col(FlowRun.ended_at).is_(None))


async def _locked(session: AsyncSession, broadcast_id: int) -> Broadcast | None:
    query = sa.select(Broadcast).where(col(Broadcast.id) == broadcast_id)
    if dialect_name(session) == "postgresql":
        query = query.with_for_update()
    result = await session.scalars(query.execution_options(populate_existing=True))
    return result.first()


def _finish(broadcast: Broadcast, status: str, now: datetime) -> None:
    broadcast.status = status
    broadcast.finished_at = now
    broadcast.updated_at = now


def render_progress(progress: Progress, *, width: int = 30) -> str:
    """A progress bar and the figures, for `chatgate broadcast status ID`."""
    filled = round(progress.fraction * width)
    bar = "#" * filled + "-" * (width - filled)
    total = "?" if progress.total is None else str(progress.total)
    runs = ", ".join(f"{status} {count}" for status, count in sorted(progress.runs.items()))
    deliveries = ", ".join(
        f"{status} {count}" for status, count in sorted(progress.deliveries.items())
    )
    return "\n".join(
        [
            f"broadcast {progress.id} {progress.name!r} of flow {progress.flow}: {progress.status}",
            f"segment: {progress.segment}",
            f"[{bar}] {progress.fraction * 100:5.1f}%  planned {progress.planned}/{total}",
            f"runs: sent {progress.sent}, pending {progress.pending}"
            + (f" ({runs})" if runs else ""),
            f"messages: {deliveries or 'none yet'}",
        ]
    )
