"""The flow engine: starts runs from events, advances due runs, ends them.

Every run's state (pc, next time, pending cascade, goal window) is a row, and a
run advances inside a transaction that also stages whatever it sends (outbox
`stage()`), released only after commit. So a crash or restart resumes exactly
where the store says, and the engine never sends anything twice. Due runs are
claimed in batches with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL, the one
writer on SQLite) so several processes share the work.

A chunk of claimed runs (`CHUNK` by default) advances in one transaction: on a small
machine a transaction costs more than a run's own statements. If anything in the
chunk raises, the whole chunk rolls back and each of its runs is advanced again
in a transaction of its own, so a run that keeps failing counts its own errors
and neither loses nor holds up the others.

Events reach the engine twice over: `on_event` right after the API stored one,
and `catch_up` from a cursor of the last event id processed, so an event whose
`on_event` was lost to a crash is still handled. Both are idempotent: a run is
unique per flow + customer + trigger key, a conversion unique per run.

A run interprets the FlowVersion it started with; editing the file starts new
runs on the new version and never reaches runs in flight.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from flows.attribution import credit
from flows.caps import WEEK, Caps
from flows.cascade import Cascade, ClickTracking, Renderer
from flows.facts import CustomerFacts, Facts, load_facts, open_conversations
from flows.policies import Policies
from flows.quiet_hours import QuietHours
from flows.runs import LIVE, WATCHED, FlowRuns
from flows.spec import Branch, Exit, Flow, Goal, Jump, Send, Split, Wait
from flows.splits import split_variant
from flows.waits import wait_until
from gateway.clock import Clock
from gateway.config import Settings
from gateway.outbox import Enqueued, Outbox
from gateway.repeating import Repeating
from storage.cursors import Cursors
from storage.db import Database
from storage.models import Customer, Event, FlowRun

__all__ = ["EVENT_CURSOR", "FlowEngine", "FlowSource", "split_variant"]

log = logging.getLogger("chatgate.flows")

EVENT_CURSOR = "flows:events"
# Runs that ended longer ago than this are not looked at for goals any more.
GOAL_HORIZON = timedelta(days=90)
# Attempts at advancing a run that raised, before it fails with the error as its reason.
MAX_ERRORS = 5
# Instructions one run may execute in one go; a loop of jumps cannot hang a tick.
_MAX_STEPS = 200
# Runs advanced in one transaction, their customers' facts (flows/facts.py) read
# together: a transaction costs more than a run's own statements on a small machine,
# and the chunk stays short enough (a fraction of a second) not to hold up SQLite's
# one writer or PostgreSQL's customer locks for long.
CHUNK = 100


class FlowSource(Protocol):
    """flows/loader.py `FlowSet`: the flows of the folder and their templates."""

    flows: dict[str, Flow]

    @property
    def templates(self) -> Renderer: ...

    def get(self, name: str) -> Flow | None: ...

    def by_event(self, type: str) -> list[Flow]: ...


class FlowEngine:
    """Runs flows; `start()` runs the background loop, `aclose()` stops it."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        flows: FlowSource,
        *,
        clock: Clock,
        policies: Policies,
        tracking: ClickTracking | None = None,
        poll_s: float = 5.0,
        lease: timedelta = timedelta(minutes=2),
        batch: int = 500,
        chunk: int = CHUNK,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.flows = flows
        self.clock = clock
        self.policies = policies
        self.cascade = Cascade(
            outbox, flows.templates, policies, tracking=tracking, outranking=self._outranking
        )
        self.poll_s = poll_s
        self.lease = lease
        self.batch = batch
        self.chunk = chunk
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._versions: dict[tuple[str, str], Flow] = {}
        self._saved: set[tuple[str, str]] = set()
        self._keys = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        self._loop = Repeating(
            "flows",
            self._advance_due,
            pause=lambda: clock.sleep(poll_s),
            log=log,
            failed_event="flows.loop_failed",
        )
        self._cursor = Cursors(db)

    @classmethod
    def from_settings(
        cls, settings: Settings, db: Database, outbox: Outbox, flows: FlowSource, *, clock: Clock
    ) -> FlowEngine:
        """The engine the settings describe: quiet hours, caps, zone, click tracking."""
        policies = Policies(
            quiet_hours=QuietHours.parse(settings.quiet_hours),
            caps=Caps(per_day=settings.marketing_cap_day, per_week=settings.marketing_cap_week),
            default_zone=ZoneInfo(settings.default_timezone or settings.timezone),
        )
        tracking = None
        if settings.email_secret:
            # The tracking routes are mounted exactly when this secret is set.
            tracking = ClickTracking(settings.base_url, settings.email_secret)
        return cls(db, outbox, flows, clock=clock, policies=policies, tracking=tracking)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Keep every current flow's version, then tick in the background."""
        async with self.db.session() as session:
            for flow in self.flows.flows.values():
                await self._save_version(session, flow)
        if await self._cursor.load(EVENT_CURSOR) is None:
            # Flows react to events from now on, not to the history before them.
            async with self.db.session() as session:
                last = await session.scalar(sa.select(sa.func.max(col(Event.id))))
            await self._cursor.save(EVENT_CURSOR, str(last or 0))
        self._loop.start()

    async def aclose(self) -> None:
        await self._loop.aclose()

    async def _advance_due(self) -> bool:
        """Catch up on events, advance a batch; True while there may be more due."""
        await self.catch_up()
        return await self.tick(batch=self.batch) >= self.batch

    # ------------------------------------------------------------ events

    async def on_event(self, event_id: int) -> None:
        """React to a stored event (start runs, cancel_on, goals), then advance what is due."""
        async with self.db.session() as session:
            event = await session.get(Event, event_id)
            if event is None:
                return
            await self._handle(session, event)
        # What the event made due goes now; a bounded batch keeps the caller's request short.
        await self.tick(batch=100)

    async def catch_up(self, *, limit: int = 500) -> int:
        """Handle stored events past the cursor, in id order; how many were handled."""
        raw = await self._cursor.load(EVENT_CURSOR)
        after = int(raw) if raw and raw.isdigit() else 0
        async with self.db.session() as session:
            events = list(
                await session.scalars(
                    sa.select(Event)
                    .where(col(Event.id) > after)
                    .order_by(col(Event.id))
                    .limit(limit)
                )
            )
            for event in events:
                await self._handle(session, event)
        if events:
            await self._cursor.save(EVENT_CURSOR, str(events[-1].id))
        return len(events)

    async def _handle(self, session: AsyncSession, event: Event) -> None:
        assert event.id is not None
        now = self.clock.now()
        runs = FlowRuns(session)
        customer = await session.get(Customer, event.customer_id)
        if customer is None or customer.erased_at is not None:
            return
        watched = await runs.of_customer(
            event.customer_id, WATCHED, lock=True, ended_after=now - GOAL_HORIZON
        )
        for run in watched:
            flow = await self._version(session, run)
            if run.status in LIVE and flow is not None and event.type in flow.cancel_on:
                _end(run, "cancelled", f"cancelled by {event.type} (event {event.id})", now)
                continue
            goal = run.goal or {}
            if goal.get("event") == event.type and _in_window(goal, event.occurred_at):
                conversion = await credit(session, run, event, now)
                run.goal = None
                run.updated_at = now
                if conversion is not None:
                    log.info(
                        "flows.converted",
                        extra={"run": run.id, "flow": run.flow_name, "step": conversion.step},
                    )
                reached = f"goal {event.type} reached (event {event.id})"
                finished = run.status == "done" and conversion is not None
                if finished or (goal.get("exit", True) and run.status == "active"):
                    _end(run, "converted", reached, now)
                elif run.status == "holdout" and run.ended_at is None:
                    run.ended_at, run.end_reason, run.next_at = now, "goal reached", None
        for flow in self.flows.by_event(event.type):
            key = self._trigger_key(flow, event, customer)
            await self.start_runs(
                session,
                flow,
                [event.customer_id],
                trigger_key=key,
                context={"event": _event_json(event)},
            )

    def _trigger_key(self, flow: Flow, event: Event, customer: Customer) -> str:
        if not flow.trigger.key:
            return str(event.id)
        try:
            key = self._keys.from_string(flow.trigger.key).render(
                event=_event_json(event), customer={"id": customer.id}
            )
        except TemplateError as exc:
            # Starting on the event id keeps the run; only the dedupe is lost.
            log.warning(
                "flows.key_failed", extra={"flow": flow.name, "event": event.id, "error": str(exc)}
            )
            return str(event.id)
        return key.strip() or str(event.id)

    # ------------------------------------------------------------ runs

    async def start_runs(
        self,
        session: AsyncSession,
        flow: Flow,
        customer_ids: Sequence[int],
        *,
        trigger_key: str,
        context: dict[str, Any],
        broadcast_id: int | None = None,
    ) -> int:
        """Start `flow` for each customer (once per trigger key); how many started."""
        await self._save_version(session, flow)
        started = await FlowRuns(session).start(
            flow,
            customer_ids,
            trigger_key=trigger_key,
            context=context,
            now=self.clock.now(),
            broadcast_id=broadcast_id,
        )
        return len(started)

    async def tick(self, *, batch: int = 500) -> int:
        """Claim due runs and advance them a chunk per transaction; how many were claimed."""
        now = self.clock.now()
        async with self.db.session() as session:
            ids = await FlowRuns(session).claim(
                now=now, owner=self.owner, lease=self.lease, batch=batch
            )
            names: dict[int, str] = {}
            if ids:
                rows = await session.execute(
                    sa.select(col(FlowRun.id), col(FlowRun.flow_name)).where(
                        col(FlowRun.id).in_(ids)
                    )
                )
                names = {int(run_id or 0): str(name) for run_id, name in rows}

        def priority(run_id: int) -> int:
            flow = self.flows.get(names.get(run_id, ""))
            return flow.priority if flow is not None else 50

        # When caps or quiet hours release several runs at once, the higher priority goes first.
        order = sorted(ids, key=lambda i: (-priority(i), i))
        for start in range(0, len(order), self.chunk):
            await self._advance_chunk(order[start : start + self.chunk], now)
        return len(ids)

    async def _advance_chunk(self, run_ids: Sequence[int], now: datetime) -> None:
        """Advance the runs in one transaction; if that raises, each again in its own.

        The chunk's work rolled back as one, so the redo repeats nothing; run by run,
        the run that raises counts the error and the others go on as if nothing happened.
        """
        try:
            staged = await self._advance_together(run_ids, now)
        except Exception:
            log.warning("flows.chunk_failed", extra={"runs": len(run_ids)}, exc_info=True)
            for run_id in run_ids:
                await self._advance_one(run_id, now)
            return
        await self.outbox.release(*staged)

    async def _advance_one(self, run_id: int, now: datetime) -> None:
        try:
            staged = await self._advance_together([run_id], now)
        except Exception as exc:
            # Nothing of the attempt was kept (its transaction rolled back); try again later,
            # and give up with the error as the reason after a few tries.
            log.exception("flows.advance_failed", extra={"run": run_id})
            await self._count_error(run_id, exc, now)
            return
        await self.outbox.release(*staged)

    async def _advance_together(self, run_ids: Sequence[int], now: datetime) -> list[Enqueued]:
        """Advance the runs this process still holds in one transaction; what they staged.

        Their customers' facts are read together, and those about to get their first
        message get their conversation in one INSERT, before the runs go one by one.
        """
        async with self.db.session() as session:
            claimed = await FlowRuns(session).claimed(run_ids, self.owner)
            facts = await load_facts(
                session, [run.customer_id for run, _ in claimed], since=now - WEEK
            )
            await open_conversations(
                session, facts, await self._first_messages(session, claimed, facts)
            )
            staged: list[Enqueued] = []
            for run, customer in claimed:
                known = facts.take(run.customer_id)
                staged += await self._advance(session, run, customer, now, known)
                run.claimed_by = None
                run.claimed_until = None
                run.updated_at = now
        return staged

    async def _first_messages(
        self,
        session: AsyncSession,
        claimed: Sequence[tuple[FlowRun, Customer | None]],
        facts: Facts,
    ) -> list[int]:
        """Customers without a conversation whose run is about to send them something."""
        customers: list[int] = []
        for run, customer in claimed:
            known = facts.peek(run.customer_id)
            if known is None or known.conversation is not None or run.status != "active":
                continue
            flow = await self._version(session, run)
            if flow is None or customer is None or not _reachable(customer):
                continue
            send = _next_send(flow, run)
            if send is not None and self.cascade.may_send(customer, send, flow.purpose, known):
                customers.append(run.customer_id)
        return customers

    async def _count_error(self, run_id: int, exc: Exception, now: datetime) -> None:
        """One more failed attempt of the run: retry with backoff, or fail it for good."""
        async with self.db.session() as session:
            failed = await session.get(FlowRun, run_id, populate_existing=True)
            if failed is None:
                return
            errors = int(failed.context.get("_errors", 0)) + 1
            failed.context = {**failed.context, "_errors": errors}
            failed.claimed_by = failed.claimed_until = None
            if errors >= MAX_ERRORS:
                _end(failed, "failed", f"{type(exc).__name__}: {exc}", now)
            else:
                failed.next_at = now + timedelta(minutes=2**errors)

    async def _advance(
        self,
        session: AsyncSession,
        run: FlowRun,
        customer: Customer | None,
        now: datetime,
        facts: CustomerFacts | None = None,
    ) -> list[Enqueued]:
        """Execute the run's program from its pc until it waits or ends.

        `facts` serve the run's first send only: what it changes, a later one reads afresh.
        """
        flow = await self._version(session, run)
        if flow is None:
            _end(run, "failed", f"flow version {run.flow_name}@{run.version} is not stored", now)
            return []
        if customer is None or customer.erased_at is not None:
            _end(run, "cancelled", "the customer was erased", now)
            return []
        if customer.merged_into_id is not None:
            _end(run, "cancelled", f"the customer was merged into {customer.merged_into_id}", now)
            return []
        if run.status == "holdout":
            # A holdout only waits for its goal window to close.
            run.next_at, run.ended_at, run.end_reason = None, now, "goal window over"
            return []
        runs = FlowRuns(session)
        staged: list[Enqueued] = []
        for _ in range(_MAX_STEPS):
            if run.pc >= len(flow.program):
                _end(run, "done", "all steps done", now)
                return staged
            instruction = flow.program[run.pc]
            if isinstance(instruction, Wait):
                if run.pending.get("wait_pc") == run.pc:
                    run.pending = {}
                    run.pc += 1
                    continue
                until, problem = self._wait_until(instruction, run, customer, now)
                if until is None:
                    _end(run, "failed", problem, now)
                    return staged
                name = f"wait@{instruction.line}"
                if until <= now:
                    await runs.record(run, name, "expired", now=now, reason=problem)
                    run.pc += 1
                    continue
                run.pending = {"wait_pc": run.pc}
                run.next_at = until
                await runs.record(
                    run, name, "waiting", now=now, reason=f"until {until.isoformat()}"
                )
                return staged
            if isinstance(instruction, Send):
                result = await self.cascade.step(
                    session, run, flow, instruction, customer, now, facts
                )
                facts = None
                staged.extend(result.staged)
                if result.staged and flow.goal is not None and run.goal is None:
                    run.goal = _goal(flow.goal, now)
                if not result.advance:
                    run.next_at = result.wake_at
                    return staged
                run.pc += 1
                continue
            if isinstance(instruction, Branch):
                matched = await _matches(session, instruction.when, customer, now)
                run.pc = run.pc + 1 if matched else instruction.else_pc
                continue
            if isinstance(instruction, Jump):
                run.pc = instruction.pc
                continue
            if isinstance(instruction, Split):
                assert customer.id is not None
                variant = split_variant(flow.name, customer.id, instruction)
                if variant is None:
                    run.holdout = True
                    run.status = "holdout"
                    run.variant = None
                    await runs.record(
                        run,
                        instruction.name,
                        "held",
                        now=now,
                        reason=f"holdout group ({instruction.holdout}%): gets nothing",
                    )
                    if flow.goal is not None:
                        run.goal = _goal(flow.goal, now)
                        run.next_at = now + flow.goal.within
                    else:
                        run.next_at, run.ended_at, run.end_reason = None, now, "holdout"
                    return staged
                run.variant = variant
                run.pc += 1
                continue
            if isinstance(instruction, Goal):
                run.goal = _goal(instruction, now)
                run.pc += 1
                continue
            if isinstance(instruction, Exit):
                _end(run, "exited", f"exit at line {instruction.line}", now)
                return staged
        run.next_at = now  # a long stretch of jumps: carry on at the next tick
        return staged

    def _wait_until(
        self, wait: Wait, run: FlowRun, customer: Customer, now: datetime
    ) -> tuple[datetime | None, str]:
        context = {"event": run.context.get("event", {}), "customer": _customer_json(customer)}
        return wait_until(wait, context, self.policies.zone(customer), now)

    def _outranking(self, flow: Flow) -> list[str]:
        """The marketing flows of a higher priority than `flow` (current files)."""
        return [
            other.name
            for other in self.flows.flows.values()
            if other.purpose == "marketing" and other.priority > flow.priority
        ]

    # ------------------------------------------------------------ versions

    async def _save_version(self, session: AsyncSession, flow: Flow) -> None:
        key = (flow.name, flow.version)
        self._versions[key] = flow
        if key not in self._saved:
            await FlowRuns(session).save_version(flow, self.clock.now())
            self._saved.add(key)

    async def _version(self, session: AsyncSession, run: FlowRun) -> Flow | None:
        key = (run.flow_name, run.version)
        if key not in self._versions:
            flow = await FlowRuns(session).load_version(*key)
            if flow is None:
                return None
            self._versions[key] = flow
        return self._versions[key]


def _end(run: FlowRun, status: str, reason: str, now: datetime) -> None:
    run.status = status
    run.end_reason = reason[:200]
    run.ended_at = now
    run.next_at = None
    run.pending = {}
    run.updated_at = now


def _reachable(customer: Customer) -> bool:
    """Whether the customer is still there to be sent anything (not erased or merged)."""
    return customer.erased_at is None and customer.merged_into_id is None


def _next_send(flow: Flow, run: FlowRun) -> Send | None:
    """The send the run comes to now, past a wait that is over; None if it is not at one."""
    pc = run.pc
    if pc < len(flow.program) and run.pending.get("wait_pc") == pc:
        pc += 1
    instruction = flow.program[pc] if pc < len(flow.program) else None
    return instruction if isinstance(instruction, Send) else None


def _goal(goal: Goal, now: datetime) -> dict[str, Any]:
    return {
        "event": goal.event,
        "since": now.isoformat(),
        "until": (now + goal.within).isoformat(),
        "exit": goal.exit,
    }


def _in_window(goal: dict[str, Any], at: datetime) -> bool:
    since = goal.get("since")
    until = goal.get("until")
    if since and at < datetime.fromisoformat(since) - timedelta(minutes=1):
        return False  # a minute's slack for clocks that disagree a little
    return not until or at <= datetime.fromisoformat(until)


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "data": dict(event.data),
        "occurred_at": event.occurred_at.isoformat(),
    }


def _customer_json(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "phone": customer.phone,
        "email": customer.email,
        "timezone": customer.timezone,
        "locale": customer.locale,
        "attributes": dict(customer.attributes),
    }


async def _matches(session: AsyncSession, when: str, customer: Customer, now: datetime) -> bool:
    """Whether the segment expression holds for this one customer."""
    from flows.segments import parse_segment

    segment = parse_segment(when)
    found = await session.scalar(
        sa.select(col(Customer.id)).where(col(Customer.id) == customer.id, segment.where(now))
    )
    return found is not None
