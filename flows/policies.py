"""What every flow send must pass: consent, a person's conversation, quiet hours, caps.

Marketing needs opt-in consent for the channel (a "*" consent covers every
channel, a channel's own answer wins over it), waits while a manager owns the
conversation, waits out quiet hours in the customer's time zone and respects the
frequency caps. Transactional messages skip all of that but still stop on an
explicit stop (/stop, STOP) for the channel. Each refusal comes with a reason,
which the engine stores on the run's step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from flows.caps import Caps
from flows.facts import CustomerFacts
from flows.quiet_hours import QuietHours, local_zone
from storage.models import Consent, Conversation, ConversationMode, Customer

__all__ = ["Policies", "Verdict"]

Outcome = Literal["ok", "skipped", "postponed", "capped"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a send may go now; if not, the step outcome, why, and until when."""

    outcome: Outcome
    reason: str = ""
    until: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome == "ok"


OK = Verdict("ok")


class Policies:
    """The rules of one deployment (quiet hours, caps, the customers' default zone)."""

    def __init__(
        self,
        *,
        quiet_hours: QuietHours,
        caps: Caps,
        default_zone: ZoneInfo,
        manager_recheck: timedelta = timedelta(minutes=15),
    ) -> None:
        self.quiet_hours = quiet_hours
        self.caps = caps
        self.default_zone = default_zone
        self.manager_recheck = manager_recheck

    def zone(self, customer: Customer) -> ZoneInfo:
        """The customer's time zone, or the deployment's default."""
        return local_zone(customer.timezone, self.default_zone)

    async def check(
        self,
        session: AsyncSession,
        *,
        customer: Customer,
        channel: str,
        purpose: str,
        now: datetime,
        facts: CustomerFacts | None = None,
        outranked_by: Sequence[str] = (),
    ) -> Verdict:
        """The verdict for one message of `purpose` to `customer` on `channel` at `now`.

        `facts`, read for a chunk of runs beforehand, stand in for this customer's queries;
        `outranked_by` are the flows whose runs the caps keep a last slot for.
        """
        assert customer.id is not None
        if facts is None:
            refusal = await consent_refusal(session, customer.id, channel, purpose)
        else:
            refusal = refusal_from(facts.consents, channel, purpose)
        if refusal is not None:
            return Verdict("skipped", refusal)
        if purpose != "marketing":
            return OK
        if facts is None:
            owned = await manager_owns(session, customer.id)
        else:
            owned = facts.conversation is not None and facts.conversation[1] == (
                ConversationMode.manager
            )
        if owned:
            return Verdict(
                "postponed",
                "a manager owns the conversation; waiting until it is released",
                now + self.manager_recheck,
            )
        zone = self.zone(customer)
        allowed_at = self.quiet_hours.next_allowed(now, zone)
        if allowed_at is not None:
            start, end = self.quiet_hours.start, self.quiet_hours.end
            return Verdict(
                "postponed",
                f"quiet hours {start:%H:%M}-{end:%H:%M} in {zone.key}",
                allowed_at,
            )
        times = None if facts is None else facts.sent_times
        hit = await self.caps.check(
            session, customer.id, now, zone, times=times, outranked_by=outranked_by
        )
        if hit is not None:
            return Verdict("capped", hit.reason, hit.until)
        return OK


async def consent_refusal(
    session: AsyncSession, customer_id: int, channel: str, purpose: str
) -> str | None:
    """Why consent forbids the message, or None when it may go."""
    rows = list(
        await session.scalars(
            sa.select(Consent).where(
                col(Consent.customer_id) == customer_id,
                col(Consent.channel).in_([channel, "*"]),
                col(Consent.purpose).in_(["marketing", "transactional"]),
            )
        )
    )
    return refusal_from(rows, channel, purpose)


def refusal_from(consents: Sequence[Consent], channel: str, purpose: str) -> str | None:
    """`consent_refusal` over the customer's consent rows (others' channels are ignored)."""
    rows = [c for c in consents if c.channel in (channel, "*")]

    def answer(for_purpose: str) -> bool | None:
        own = [c for c in rows if c.purpose == for_purpose and c.channel == channel]
        every = [c for c in rows if c.purpose == for_purpose and c.channel == "*"]
        chosen = own or every
        return chosen[0].granted if chosen else None

    if answer("transactional") is False:
        return f"the customer stopped all messages on {channel}"
    if purpose == "marketing":
        granted = answer("marketing")
        if granted is None:
            return f"no marketing consent for {channel}"
        if not granted:
            return f"the customer withdrew marketing consent for {channel}"
    return None


async def manager_owns(session: AsyncSession, customer_id: int) -> bool:
    """Whether a person is handling the customer's conversation right now."""
    mode = await session.scalar(
        sa.select(col(Conversation.mode))
        .where(
            col(Conversation.customer_id) == customer_id,
            col(Conversation.merged_into_id).is_(None),
        )
        .order_by(col(Conversation.id).desc())
        .limit(1)
    )
    return mode == ConversationMode.manager
