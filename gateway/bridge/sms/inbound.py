"""Provider webhooks → our Inbound and Signal records, each handed to the sink once.

Every provider module turns its callback into `Received` items; `SmsEvents` hands
each to the sink once (providers resend a callback they think failed) through
`Once`: a message's key is recorded with the message, a status report's after it
was applied, so a resend of one whose handling failed is not taken for a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from gateway.bridge.sms.keywords import stop_keyword
from gateway.channels import Inbound, Signal, Sink, UpdateKey
from gateway.once import Once
from storage.addresses import normalize_phone
from storage.errors import InvalidAddress

__all__ = ["Received", "SmsEvents", "phone_or_raw", "sms_inbound", "unix_time"]


@dataclass(frozen=True, slots=True)
class Received:
    """One thing a webhook carried, with the key that makes a resend recognisable."""

    item: Inbound | Signal
    key: str | None = None  # None: the provider gives nothing to dedupe on
    unreachable: str | None = None  # a failed report that says the number is dead


def phone_or_raw(raw: str, region: str) -> str:
    """E.164 when `raw` is a valid number; short codes and sender names stay as they are."""
    try:
        return normalize_phone(raw, region)
    except InvalidAddress:
        return raw.strip()


def unix_time(raw: str | None) -> datetime | None:
    """A unix timestamp field as an aware datetime, or None when absent or malformed."""
    if not raw:
        return None
    try:
        return datetime.fromtimestamp(int(float(raw)), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def sms_inbound(
    *,
    account: str,
    sender: str,
    text: str,
    region: str,
    external_id: str | None,
    sent_at: datetime | None = None,
    meta: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Inbound:
    """An SMS from `sender` to our `account`; STOP/START replies are marked in meta."""
    data = dict(meta or {})
    keyword = stop_keyword(text)
    if keyword is not None:
        data["sms_keyword"] = keyword
    return Inbound(
        channel="sms",
        account=account,
        address=phone_or_raw(sender, region),
        text=text,
        external_id=external_id,
        sent_at=sent_at,
        meta=data,
        **extra,
    )


class SmsEvents:
    """Hands what one provider's webhooks carry to the sink, each thing once."""

    def __init__(self, sink: Sink, source: str) -> None:
        self._sink = sink
        self.source = source  # dedupe namespace, e.g. "sms.twilio"
        self._once = Once(sink, source)

    async def hand_over(self, items: Iterable[Received]) -> None:
        """Give each new item to the sink; raises if one failed, so the provider resends."""
        for received in items:
            if received.key is None:
                await self._deliver(received)
            elif isinstance(received.item, Inbound):
                # The sink records the key with the message it stores: one transaction.
                await self._once.run_recording(received.key, partial(self._inbound, received.item))
            else:
                await self._once.run(received.key, partial(self._deliver, received))

    async def _inbound(self, item: Inbound, update: UpdateKey) -> None:
        await self._sink.inbound(replace(item, update=update))

    async def _deliver(self, received: Received) -> None:
        item = received.item
        if isinstance(item, Inbound):
            await self._sink.inbound(item)
            return
        await self._sink.signal(item)
        if received.unreachable and item.address:
            await self._sink.reachability(
                item.channel,
                item.account,
                item.address,
                reachable=False,
                reason=received.unreachable,
            )
