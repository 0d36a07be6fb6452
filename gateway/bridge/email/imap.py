"""The IMAP poller: a mailbox's new mail, imported once each, across restarts.

Each new message goes to `EmailEvents` exactly as the SMTP receiver's do. The
read position is the mailbox's UIDVALIDITY and the last imported UID, kept in
the store's cursors after every message, so a restart neither re-reads nor
skips. When UIDVALIDITY changes (the mailbox was rebuilt) every message is read
again; the store knows each by its Message-ID, so nothing doubles.

Between reads it IDLEs where the server offers IDLE (re-issued every
`idle_renew_s`, under RFC 2177's 29 minutes), else it polls every
`poll_interval_s`. A lost connection is re-made with exponential backoff.

A message whose import fails while the store answers is tried
`max_attempts` times, then flagged `$ChatgateFailed` on the server (where
the raw message stays, untouched) and logged, so it never holds back the
ones after it; while the store itself is down, nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol

from gateway.bridge.email.imap_client import ImapError, ImapMailbox, ImapSession, parse_imap_url

__all__ = ["FAILED_FLAG", "CursorStore", "ImapPoller", "MailImport"]

log = logging.getLogger(__name__)

FAILED_FLAG = "$ChatgateFailed"
_MAX_CURSOR_NAME = 100


class MailImport(Protocol):
    """Where fetched mail goes (`EmailEvents`)."""

    async def handle(self, raw: bytes, *, envelope_to: list[str] | None = None) -> bool: ...

    async def store_reachable(self) -> bool:
        """Whether the store answers: a failing message is then the message's fault."""
        ...


class CursorStore(Protocol):
    """Named read positions (`storage.cursors.Cursors`)."""

    async def load(self, name: str) -> str | None: ...

    async def save(self, name: str, value: str) -> None: ...


class _StoreDown(Exception):
    """Importing failed and the store does not answer: wait, skip nothing."""


class ImapPoller:
    """Reads one IMAP folder into chatgate; `start()` then `aclose()`."""

    def __init__(
        self,
        url: str,
        events: MailImport,
        cursors: CursorStore,
        *,
        idle: bool = True,
        poll_interval_s: float = 60.0,
        idle_renew_s: float = 25 * 60.0,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 300.0,
        max_attempts: int = 3,
        timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if poll_interval_s <= 0 or reconnect_min_s <= 0 or max_attempts < 1:
            raise ValueError("poll interval, reconnect delay and attempts must be positive")
        self.mailbox: ImapMailbox = parse_imap_url(url)
        self.events = events
        self.cursors = cursors
        self.use_idle = idle
        self.poll_interval_s = poll_interval_s
        self.idle_renew_s = idle_renew_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = max(reconnect_max_s, reconnect_min_s)
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self._ssl = ssl_context
        self._sleep = sleep
        self.cursor_name = self.mailbox.name[:_MAX_CURSOR_NAME]
        self.state = "stopped"  # connecting, reading, idle, polling, waiting
        self.imported = 0  # messages handed over by this poller (duplicates not counted)
        self.idle_rounds = 0  # IDLE commands issued (one per change or renewal)
        self.failed_uids: list[int] = []  # given up on and flagged, in this run
        self._attempts: dict[int, int] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: ImapSession | None = None

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the IMAP poller is already started")
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name=f"imap {self.cursor_name}")

    async def aclose(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.state = "stopped"

    async def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _run(self) -> None:
        delay = self.reconnect_min_s
        while not self._stop.is_set():
            session = ImapSession(self.mailbox, timeout=self.timeout_s, ssl_context=self._ssl)
            self._session = session
            try:
                self.state = "connecting"
                await session.open()
                delay = self.reconnect_min_s  # a session that got this far resets the backoff
                await self._serve(session)
            except asyncio.CancelledError:
                raise
            except (ImapError, _StoreDown) as exc:
                log.warning("imap: %s: %s; again in %.1fs", self.cursor_name, exc, delay)
            except Exception:
                log.exception("imap: %s failed; again in %.1fs", self.cursor_name, delay)
            finally:
                self._session = None
                await asyncio.shield(session.close())
            if self._stop.is_set():
                break
            self.state = "waiting"
            await self._pause(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    async def _serve(self, session: ImapSession) -> None:
        assert session.uidvalidity is not None
        last = await self._position(session.uidvalidity)
        while not self._stop.is_set():
            self.state = "reading"
            last = await self._read(session, session.uidvalidity, last)
            if self.use_idle and session.can_idle:
                self.state = "idle"
                self.idle_rounds += 1
                await session.idle(self.idle_renew_s, self._stop)
            else:
                self.state = "polling"
                await self._pause(self.poll_interval_s)

    async def _position(self, uidvalidity: int) -> int:
        """The last imported UID, or 0 when the mailbox is new to us or was rebuilt."""
        saved = await self.cursors.load(self.cursor_name)
        if saved:
            validity, _, uid = saved.partition(":")
            if validity.isdigit() and uid.isdigit() and int(validity) == uidvalidity:
                return int(uid)
            log.warning(
                "imap: %s: UIDVALIDITY is now %s (was %s): reading the folder again",
                self.cursor_name,
                uidvalidity,
                validity,
            )
        return 0

    async def _read(self, session: ImapSession, uidvalidity: int, last: int) -> int:
        for uid in await session.new_uids(last):
            if self._stop.is_set():
                break
            await self._import(session, uid)
            last = uid
            await self.cursors.save(self.cursor_name, f"{uidvalidity}:{uid}")
        return last

    async def _import(self, session: ImapSession, uid: int) -> None:
        """Hand one message over, or give up on it for good; raise to retry it later."""
        raw = await session.fetch(uid)
        if raw is None:
            return  # expunged since the search
        try:
            if await self.events.handle(raw):
                self.imported += 1
        except Exception as exc:
            if not await self._store_ok():
                raise _StoreDown(f"store unreachable while importing UID {uid}: {exc}") from exc
            attempts = self._attempts[uid] = self._attempts.get(uid, 0) + 1
            if attempts < self.max_attempts:
                raise ImapError(
                    f"UID {uid} failed ({type(exc).__name__}: {exc}), "
                    f"attempt {attempts} of {self.max_attempts}"
                ) from exc
            log.error(
                "imap: %s: gave up on UID %s (%s bytes) after %s attempts; kept on the "
                "server flagged %s",
                self.cursor_name,
                uid,
                len(raw),
                attempts,
                FAILED_FLAG,
                exc_info=exc,
            )
            self.failed_uids.append(uid)
            try:
                await session.flag(uid, FAILED_FLAG)
            except ImapError as flag_exc:
                log.warning("imap: could not flag UID %s: %s", uid, flag_exc)
        self._attempts.pop(uid, None)

    async def _store_ok(self) -> bool:
        try:
            return await self.events.store_reachable()
        except Exception:
            return False
