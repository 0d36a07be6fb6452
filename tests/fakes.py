"""Fakes at the seams, shared by the channel tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.channels import Inbound, Signal


@dataclass
class RecordingSink:
    """An in-memory router: remembers everything it is handed."""

    seen_keys: set[tuple[str, str]] = field(default_factory=set)
    inbounds: list[Inbound] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    reach: list[tuple[str, str, str, bool, str]] = field(default_factory=list)
    fail_inbounds: int = 0  # the next N inbound calls fail, as a store outage would

    async def seen(self, source: str, key: str) -> bool:
        return (source, key) in self.seen_keys

    async def first_seen(self, source: str, key: str) -> bool:
        if (source, key) in self.seen_keys:
            return False
        self.seen_keys.add((source, key))
        return True

    async def inbound(self, message: Inbound) -> None:
        if self.fail_inbounds:
            self.fail_inbounds -= 1
            raise RuntimeError("the store is down")
        self.inbounds.append(message)

    async def signal(self, signal: Signal) -> None:
        self.signals.append(signal)

    async def reachability(
        self, channel: str, account: str, address: str, *, reachable: bool, reason: str
    ) -> None:
        self.reach.append((channel, account, address, reachable, reason))

    @property
    def untouched(self) -> bool:
        return not (self.seen_keys or self.inbounds or self.signals or self.reach)
