"""Injected failures: make the next N calls of a method fail so callers' retries get tested."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.sandbox.telegram.errors import ApiError, too_many_requests

FaultKind = Literal["error", "timeout", "disconnect"]


@dataclass
class Fault:
    """What the next `times` calls get: an error reply, a hang, or a dropped connection."""

    method: str
    times: int = 1
    kind: FaultKind = "error"
    error_code: int = 500
    description: str = "Internal Server Error"
    retry_after: int | None = None
    delay: float = 30.0
    bot_id: int | None = None

    def error(self) -> ApiError:
        """The reply for kind="error" (and for a hang once it ends)."""
        if self.retry_after is not None:
            return too_many_requests(self.retry_after)
        return ApiError(self.error_code, self.description)


class Faults:
    """Queue of armed faults, matched by method name (case-insensitive) and optionally bot."""

    def __init__(self) -> None:
        self._armed: list[Fault] = []

    def arm(self, fault: Fault) -> Fault:
        """Add a fault; earlier ones for the same method fire first."""
        if fault.times < 1:
            raise ValueError("times must be >= 1")
        self._armed.append(fault)
        return fault

    def take(self, bot_id: int, method: str) -> Fault | None:
        """Use up one shot of the first fault matching this call."""
        for fault in self._armed:
            if fault.method.lower() == method.lower() and fault.bot_id in (None, bot_id):
                fault.times -= 1
                if fault.times == 0:
                    self._armed.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        """Disarm everything."""
        self._armed.clear()
