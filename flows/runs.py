"""Flow runs in the store: versions, starting, claiming due runs, step records.

A repository over one session, like the ones in `storage/`; it never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from flows.spec import Flow
from storage.inserts import dialect_name, insert
from storage.models import Customer, FlowRun, FlowStep, FlowVersion

__all__ = ["LIVE", "WATCHED", "FlowRuns"]

# Runs the engine still advances; and runs whose goal window may still be open.
LIVE = ("active", "holdout")
WATCHED = ("active", "holdout", "done")
_REASON_MAX = 500


class FlowRuns:
    """Run rows of one session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def save_version(self, flow: Flow, now: datetime) -> None:
        """Keep the compiled flow under its version (once; later saves are no-ops)."""
        await self.session.execute(
            insert(self.session, FlowVersion)
            .values(
                flow_name=flow.name, version=flow.version, definition=flow.to_json(), created_at=now
            )
            .on_conflict_do_nothing(index_elements=["flow_name", "version"])
        )

    async def load_version(self, flow_name: str, version: str) -> Flow | None:
        definition = await self.session.scalar(
            sa.select(col(FlowVersion.definition)).where(
                col(FlowVersion.flow_name) == flow_name, col(FlowVersion.version) == version
            )
        )
        return None if definition is None else Flow.from_json(definition)

    async def start(
        self,
        flow: Flow,
        customer_ids: Sequence[int],
        *,
        trigger_key: str,
        context: dict[str, Any],
        now: datetime,
        broadcast_id: int | None = None,
    ) -> list[int]:
        """Insert a run per customer, due now; a run that exists for the key is left alone.

        Returns the ids of the runs this call started.
        """
        if not customer_ids:
            return []
        rows = [
            {
                "flow_name": flow.name,
                "version": flow.version,
                "customer_id": customer_id,
                "trigger_key": trigger_key[:200],
                "status": "active",
                "pc": 0,
                "next_at": now,
                "context": context,
                "variant": None,
                "holdout": False,
                "pending": {},
                "goal": None,
                "broadcast_id": broadcast_id,
                "started_at": now,
                "updated_at": now,
            }
            for customer_id in customer_ids
        ]
        # executemany: the statement compiles once and the driver batches the rows
        # ("insertmanyvalues"); one VALUES list of 15 parameters a row compiled per call
        # cost more than the database's own work.
        result = await self.session.execute(
            insert(self.session, FlowRun)
            .on_conflict_do_nothing(index_elements=["flow_name", "customer_id", "trigger_key"])
            .returning(col(FlowRun.id)),
            rows,
        )
        return [int(i) for i in result.scalars() if i is not None]

    async def claim(self, *, now: datetime, owner: str, lease: timedelta, batch: int) -> list[int]:
        """Take up to `batch` due runs for `owner` until `now + lease`.

        PostgreSQL skips rows another process holds (FOR UPDATE SKIP LOCKED); on
        SQLite the one writer at a time makes the select-then-update safe.
        """
        query = (
            sa.select(col(FlowRun.id))
            .where(
                col(FlowRun.status).in_(LIVE),
                col(FlowRun.next_at) <= now,
                sa.or_(col(FlowRun.claimed_until).is_(None), col(FlowRun.claimed_until) < now),
            )
            .order_by(col(FlowRun.next_at), col(FlowRun.id))
            .limit(batch)
        )
        if dialect_name(self.session) == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = [int(i) for i in await self.session.scalars(query) if i is not None]
        if ids:
            await self.session.execute(
                sa.update(FlowRun)
                .where(col(FlowRun.id).in_(ids))
                .values(claimed_by=owner, claimed_until=now + lease)
            )
        return ids

    async def claimed(
        self, run_ids: Sequence[int], owner: str
    ) -> list[tuple[FlowRun, Customer | None]]:
        """Those of the runs `owner` holds, locked for this transaction, with their customers.

        One query for them all, in the order of `run_ids`: each customer is read
        fresh with its run (None if gone).
        """
        query = (
            sa.select(FlowRun, Customer)
            .outerjoin(Customer, col(Customer.id) == col(FlowRun.customer_id))
            .where(col(FlowRun.id).in_(list(run_ids)), col(FlowRun.claimed_by) == owner)
            .order_by(col(FlowRun.id))
        )
        if dialect_name(self.session) == "postgresql":
            query = query.with_for_update(of=FlowRun)
        result = await self.session.execute(query.execution_options(populate_existing=True))
        found = {run.id: (run, customer) for run, customer in result}
        return [found[i] for i in run_ids if i in found]

    async def of_customer(
        self,
        customer_id: int,
        statuses: Sequence[str],
        *,
        lock: bool = False,
        ended_after: datetime | None = None,
    ) -> list[FlowRun]:
        """The customer's runs in `statuses`; ended ones only if they ended after `ended_after`."""
        query = (
            sa.select(FlowRun)
            .where(col(FlowRun.customer_id) == customer_id, col(FlowRun.status).in_(statuses))
            .order_by(col(FlowRun.id))
            .execution_options(populate_existing=True)
        )
        if ended_after is not None:
            query = query.where(
                sa.or_(col(FlowRun.ended_at).is_(None), col(FlowRun.ended_at) > ended_after)
            )
        if lock and dialect_name(self.session) == "postgresql":
            query = query.with_for_update()
        return list(await self.session.scalars(query))

    async def record(
        self,
        run: FlowRun,
        step: str,
        outcome: str,
        *,
        now: datetime,
        reason: str | None = None,
        channel: str | None = None,
        delivery_id: int | None = None,
        message_id: int | None = None,
    ) -> FlowStep:
        """Write what happened at a step: the answer to "why didn't they get it?"."""
        assert run.id is not None
        row = FlowStep(
            run_id=run.id,
            flow_name=run.flow_name,
            step=step[:100],
            channel=channel,
            variant=run.variant,
            outcome=outcome,
            reason=None if reason is None else reason[:_REASON_MAX],
            delivery_id=delivery_id,
            message_id=message_id,
            at=now,
        )
        # No flush of its own: the row goes with the run's next query or its commit.
        self.session.add(row)
        return row

    async def steps(self, run_ids: Sequence[int]) -> list[FlowStep]:
        if not run_ids:
            return []
        rows = await self.session.scalars(
            sa.select(FlowStep)
            .where(col(FlowStep.run_id).in_(list(run_ids)))
            .order_by(col(FlowStep.id))
        )
        return list(rows)
