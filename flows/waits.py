"""When a `wait` step ends: after a duration, at a time from the trigger minus an
offset, or at the next local time of day in the customer's zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flows.quiet_hours import next_local_time
from flows.spec import Wait

__all__ = ["wait_until"]


def wait_until(
    wait: Wait, context: dict[str, Any], zone: ZoneInfo, now: datetime
) -> tuple[datetime | None, str]:
    """The end of the wait (None: it cannot be known) and what to say if it passed or failed.

    `context` holds "event" and "customer"; `until` is a dotted path into it whose
    value is an ISO time (a time without an offset is a wall time in `zone`).
    """
    if wait.duration is not None:
        return now + wait.duration, ""
    if wait.until_local is not None:
        return next_local_time(now, wait.until_local, zone), ""
    if wait.until is None:
        return None, "a wait without a time"
    value: Any = context
    for part in wait.until.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if not isinstance(value, str):
        return None, f"{wait.until} is missing from the trigger (a time is needed)"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None, f"{wait.until} = {value!r} is not an ISO time"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    before = wait.before or timedelta()
    return moment.astimezone(UTC) - before, f"{wait.until} minus {before} already passed"
