"""What every SMS provider adapter does before and around its HTTP call.

The provider modules (`kannel`, `smsru`, `twilio`) own the request and the
meaning of each answer; here are the common steps: the address as E.164 (a number
that cannot be valid is refused before anything is sent, and marks the identity
unreachable), the text rendered and counted (too many parts is refused, never
cut), and transport errors mapped to retryable failures.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from gateway.bridge.sms.render import render
from gateway.bridge.sms.segments import Segments, TooManySegments, check_segments
from gateway.channels import Failure, Outbound, Sent
from storage.addresses import normalize_phone
from storage.errors import InvalidAddress

__all__ = ["DEFAULT_MAX_SEGMENTS", "Prepared", "SmsHttp", "prepare", "retry_after"]

log = logging.getLogger(__name__)

DEFAULT_MAX_SEGMENTS = 6


@dataclass(frozen=True, slots=True)
class Prepared:
    """An outbound SMS ready for a provider: E.164 number, final text, its parts."""

    delivery_id: int
    phone: str  # E.164, with "+"
    text: str
    segments: Segments

    @property
    def digits(self) -> str:
        """The number without "+", as Kannel and SMS.ru take it."""
        return self.phone.lstrip("+")


def prepare(message: Outbound, *, region: str, max_segments: int) -> Prepared | Failure:
    """The SMS to send for `message`, or the final Failure that sending it would be."""
    try:
        phone = normalize_phone(message.address, region)
    except InvalidAddress as exc:
        return Failure(f"sms: {exc}", retryable=False, unreachable=True)
    text = render(message)
    if not text.strip():
        return Failure("sms: nothing to send, the text is empty", retryable=False)
    try:
        segments = check_segments(text, max_segments)
    except TooManySegments as exc:
        return Failure(f"sms: {exc}", retryable=False)
    return Prepared(message.delivery_id, phone, text, segments)


class SmsHttp:
    """The HTTP session an adapter sends through: injected, or its own (made lazily)."""

    def __init__(self, session: aiohttp.ClientSession | None, *, timeout: float) -> None:
        self._session = session
        self._owned = session is None
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def guarded(
        self, provider: str, prepared: Prepared, call: Callable[[], Awaitable[Sent | Failure]]
    ) -> Sent | Failure:
        """Run `call`: network errors and timeouts become retryable; failures are logged."""
        try:
            result = await call()
        except (aiohttp.ClientError, TimeoutError) as exc:
            result = Failure(f"{provider} unreachable: {type(exc).__name__}: {exc}", retryable=True)
        if isinstance(result, Failure):
            log.info(
                "sms.send_failed",
                extra={
                    "delivery": prepared.delivery_id,
                    "provider": provider,
                    "why": result.reason,
                },
            )
        return result

    async def aclose(self) -> None:
        if self._owned and self._session is not None:
            await self._session.close()
        self._session = None


def retry_after(header: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is not used by SMS APIs)."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None
