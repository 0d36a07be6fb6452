"""Injected failures (forced errors, HTTP 500, dropped connections, flood) and call counters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Fault:
    """Make the next `remaining` calls of `method` fail in one of three ways."""

    method: str
    remaining: int
    error_code: int | None = None
    error_msg: str | None = None
    http_status: int | None = None
    drop: bool = False


@dataclass(slots=True)
class Stats:
    """What the API answered, for tests that assert on retries and back-off."""

    calls: Counter[str] = field(default_factory=Counter)
    errors: Counter[int] = field(default_factory=Counter)
    error_log: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "errors": {str(code): count for code, count in self.errors.items()},
            "error_6_count": self.errors[6],
            "send_calls": self.calls["messages.send"],
        }


class FaultBook:
    """Pending faults per method and flood-control triggers per peer (None: any peer)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._flood: dict[int | None, int] = {}

    def add(self, fault: Fault) -> None:
        if fault.remaining > 0:
            self._faults.append(fault)

    def take(self, method: str) -> Fault | None:
        """Consume one use of the first fault registered for this method ("*" matches all)."""
        for fault in self._faults:
            if fault.method in {method, "*"}:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def flood(self, peer_id: int | None, times: int) -> None:
        self._flood[peer_id] = self._flood.get(peer_id, 0) + times

    def take_flood(self, peer_id: int) -> bool:
        for key in (peer_id, None):
            if self._flood.get(key, 0) > 0:
                self._flood[key] -= 1
                return True
        return False

    def clear(self) -> None:
        self._faults.clear()
        self._flood.clear()
