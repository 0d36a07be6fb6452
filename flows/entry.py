"""Segment entry: a flow whose trigger is a segment alone starts for customers entering it.

Every `poll_s` (and for one customer right after an event about them) each such
flow's segment is queried for customers who have no run of the flow yet, in
batches by customer id, and a run is started for each with trigger key "entry".

Re-entry: none. The trigger key is the constant "entry", so a customer goes
through a segment-entry flow once; leaving the segment and coming back does not
start it again. Segments with time windows ("no purchase in 60 days") flap as
time passes, and a customer who bought once and lapsed again should not get the
same welcome or win-back twice. A flow meant to repeat is written with a
schedule (a broadcast per fire, keyed by the fire time) instead.

Customers already in the segment when the flow first appears enter on the first
evaluation, as with a segment source in Mautic.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel import col

from flows.broadcasts import RunStarter
from flows.segments import parse_segment
from flows.spec import Flow
from gateway.clock import Clock
from gateway.repeating import Repeating
from storage.db import Database
from storage.models import Customer, Event, FlowRun

__all__ = ["ENTRY_KEY", "SegmentEntry"]

log = logging.getLogger("chatgate.flows.entry")

ENTRY_KEY = "entry"


class EntryFlows(Protocol):
    """`flows.loader.FlowSet`, as far as segment entry uses it."""

    def segment_entry(self) -> list[Flow]: ...


class SegmentEntry:
    """Starts segment-entry flows for newcomers; `start()` runs the periodic pass."""

    def __init__(
        self,
        db: Database,
        engine: RunStarter,
        flows: EntryFlows,
        *,
        clock: Clock,
        batch: int = 500,
        poll_s: float = 60.0,
    ) -> None:
        self.db = db
        self.engine = engine
        self.flows = flows
        self.clock = clock
        self.batch = batch
        self.poll_s = poll_s
        self._loop = Repeating(
            "segment-entry",
            self._evaluate_all,
            pause=lambda: clock.sleep(poll_s),
            log=log,
            failed_event="entry.loop_failed",
        )

    async def evaluate(self, customer_ids: Sequence[int] | None = None) -> int:
        """Start every segment-entry flow for customers newly in its segment (only among
        `customer_ids` when given); how many runs started."""
        started = 0
        for flow in self.flows.segment_entry():
            started += await self._flow(flow, customer_ids)
        return started

    async def on_event(self, event_id: int) -> None:
        """A stored event may have moved its customer into a segment: look at them alone.

        The signature of `gateway.api.events.EventListener`, called after the event commits.
        """
        async with self.db.session() as session:
            customer_id = await session.scalar(
                sa.select(col(Event.customer_id)).where(col(Event.id) == event_id)
            )
        if customer_id is not None:
            await self.for_customer(int(customer_id))

    async def for_customer(self, customer_id: int) -> int:
        """Segment entry for one customer; how many runs started."""
        return await self.evaluate([customer_id])

    async def _flow(self, flow: Flow, customer_ids: Sequence[int] | None) -> int:
        assert flow.trigger.segment is not None
        segment = parse_segment(flow.trigger.segment)
        entered = (
            sa.select(col(FlowRun.id))
            .where(
                col(FlowRun.flow_name) == flow.name,
                col(FlowRun.customer_id) == col(Customer.id),
                col(FlowRun.trigger_key) == ENTRY_KEY,
            )
            .exists()
        )
        cursor = 0
        started = 0
        while True:
            now = self.clock.now()
            query = (
                segment.select_ids(now).where(~entered, col(Customer.id) > cursor).limit(self.batch)
            )
            if customer_ids is not None:
                query = query.where(col(Customer.id).in_(list(customer_ids)))
            async with self.db.session() as session:
                ids = [int(i) for i in await session.scalars(query)]
                if ids:
                    started += await self.engine.start_runs(
                        session,
                        flow,
                        ids,
                        trigger_key=ENTRY_KEY,
                        context=_context(flow, now.isoformat()),
                    )
            if len(ids) < self.batch:
                break
            cursor = ids[-1]
        if started:
            log.info("entry.started", extra={"flow": flow.name, "runs": started})
        return started

    async def start(self) -> None:
        self._loop.start()

    async def aclose(self) -> None:
        await self._loop.aclose()

    async def _evaluate_all(self) -> bool:
        await self.evaluate()
        return False  # a whole pass each time: wait before the next


def _context(flow: Flow, at: str) -> dict[str, Any]:
    """What templates see as `event` in a run started by entering the segment."""
    return {
        "event": {
            "id": None,
            "type": "segment_entry",
            "data": {"segment": flow.trigger.segment},
            "occurred_at": at,
        }
    }
