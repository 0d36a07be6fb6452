"""Crediting a goal event to the one message of the run that earned it.

One conversion per run: the most recent message of the run the customer engaged
with (read, opened, clicked, replied — never a machine's open or click), else
the last one sent; a run that sent nothing (a holdout) converts with no message,
which is what lift is measured against. Stored once: a second goal event, or the
same one processed twice, finds the run's conversion already there.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.inserts import insert
from storage.models import Conversion, Delivery, Event, FlowRun, FlowStep

__all__ = ["credit", "engaged_at"]


def engaged_at(delivery: Delivery) -> datetime | None:
    """When a person last showed they saw this delivery (machine hits are not stored here)."""
    times = [t for t in (delivery.read_at, delivery.clicked_at, delivery.replied_at) if t]
    return max(times) if times else None


async def credit(
    session: AsyncSession, run: FlowRun, event: Event, now: datetime
) -> Conversion | None:
    """Store the run's conversion for `event`; None if the run already has one."""
    assert run.id is not None
    assert event.id is not None
    sent = list(
        await session.execute(
            sa.select(FlowStep, Delivery)
            .join(Delivery, col(Delivery.id) == col(FlowStep.delivery_id))
            .where(col(FlowStep.run_id) == run.id, col(FlowStep.outcome) == "sent")
            .order_by(col(FlowStep.id))
        )
    )
    chosen: tuple[FlowStep, Delivery] | None = None
    engaged = [(engaged_at(d), s.id or 0, s, d) for s, d in sent if engaged_at(d) is not None]
    if engaged:
        _, _, step, delivery = max(engaged, key=lambda item: (item[0], item[1]))
        chosen = (step, delivery)
    elif sent:
        step, delivery = sent[-1]
        chosen = (step, delivery)
    amount, currency = _money(event.data)
    values: dict[str, Any] = {
        "run_id": run.id,
        "flow_name": run.flow_name,
        "step": chosen[0].step if chosen else None,
        "channel": chosen[0].channel if chosen else None,
        "variant": run.variant,
        "delivery_id": chosen[1].id if chosen else None,
        "event_id": event.id,
        "amount": amount,
        "currency": currency,
        "at": now,
    }
    result = await session.execute(
        insert(session, Conversion)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["run_id"])
        .returning(col(Conversion.id))
    )
    new_id = result.scalar()
    if new_id is None:
        return None
    return await session.get(Conversion, new_id)


def _money(data: dict[str, Any]) -> tuple[Decimal | None, str | None]:
    raw = data.get("amount")
    amount: Decimal | None = None
    if isinstance(raw, int | float | str) and not isinstance(raw, bool):
        try:
            amount = Decimal(str(raw))
        except InvalidOperation:
            amount = None
        if amount is not None and not amount.is_finite():
            amount = None
    currency = data.get("currency")
    code = currency.upper()[:3] if isinstance(currency, str) and currency.strip() else None
    return amount, code
