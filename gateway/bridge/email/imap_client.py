"""One IMAP session in our terms: connect, log in, select, list new UIDs, fetch, IDLE.

aioimaplib speaks the protocol; this module is where its objects stop. It adds
what the poller needs and the library lacks: STARTTLS on a plain connection
(upgraded with `loop.start_tls` when the server offers it), the mailbox's
UIDVALIDITY from SELECT, literal bodies picked out of FETCH responses, and a
connection loss that fails the command in flight at once instead of at its
timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aioimaplib

__all__ = ["ImapError", "ImapMailbox", "ImapSession", "parse_imap_url"]

T = TypeVar("T")

_PORTS = {"imap": 143, "imap+starttls": 143, "imaps": 993}
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.IGNORECASE)
_UID = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
_LITERAL = re.compile(rb"\{(\d+)\}\s*$")
_ATOM = re.compile(r"^[A-Za-z0-9_./-]+$")


class ImapError(Exception):
    """The server refused a command or the connection is gone."""


@dataclass(frozen=True, slots=True)
class ImapMailbox:
    """Where to read mail, from `CHATGATE_IMAP_URL`."""

    host: str
    port: int
    username: str
    password: str
    folder: str = "INBOX"
    use_tls: bool = False  # implicit TLS (imaps)
    start_tls: bool | None = None  # True: required; None: when offered; False: never

    @property
    def name(self) -> str:
        """A stable name for the cursor: user, server and folder (no password)."""
        return f"imap:{self.username}@{self.host}:{self.port}/{self.folder}"


def parse_imap_url(url: str) -> ImapMailbox:
    """`imaps://`, `imap://` (STARTTLS when offered) or `imap+starttls://`.

    The rest is `user:pass@host[:port][/folder]`, percent-decoded; INBOX by default.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _PORTS:
        raise ValueError(f"imap url scheme must be one of {', '.join(_PORTS)}, not {scheme!r}")
    if not parts.hostname:
        raise ValueError(f"imap url has no host: {url!r}")
    if not parts.username or parts.password is None:
        raise ValueError("imap url needs a user and a password: imaps://user:pass@host/INBOX")
    try:
        port = parts.port or _PORTS[scheme]
    except ValueError as exc:
        raise ValueError(f"imap url has a malformed port: {exc}") from exc
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if not folder.isprintable() or not folder.isascii():
        raise ValueError(f"imap folder must be printable ASCII, not {folder!r}")
    return ImapMailbox(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username),
        password=unquote(parts.password),
        folder=folder,
        use_tls=scheme == "imaps",
        start_tls={"imap": None, "imap+starttls": True, "imaps": False}[scheme],
    )


def _quoted(value: str) -> str:
    if _ATOM.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(response: Any, what: str) -> list[bytes]:
    if response.result != "OK":
        text = b" ".join(bytes(line) for line in response.lines[-1:]).decode(errors="replace")
        raise ImapError(f"imap: {what} refused: {response.result} {text}")
    return [bytes(line) if isinstance(line, bytearray) else line for line in response.lines]


class ImapSession:
    """One logged-in connection with one folder selected; `close()` drops it."""

    def __init__(
        self,
        mailbox: ImapMailbox,
        *,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.timeout = timeout
        self._ssl = ssl_context
        self._lost = asyncio.Event()
        self._client: aioimaplib.IMAP4 | None = None
        self.uidvalidity: int | None = None

    @property
    def can_idle(self) -> bool:
        return self._client is not None and self._client.has_capability("IDLE")

    def _tls(self) -> ssl.SSLContext:
        return self._ssl or ssl.create_default_context(ssl.Purpose.SERVER_AUTH)

    async def open(self) -> None:
        """Connect, upgrade to TLS as the URL says, log in and select the folder."""
        box = self.mailbox
        loop = asyncio.get_running_loop()
        self._client = aioimaplib.IMAP4(
            host=box.host,
            port=box.port,
            loop=loop,
            timeout=self.timeout,
            conn_lost_cb=lambda _exc: self._lost.set(),
            ssl_context=self._tls() if box.use_tls else None,
        )
        try:
            await self._client.wait_hello_from_server()
        except (OSError, TimeoutError) as exc:
            raise ImapError(f"imap: cannot reach {box.host}:{box.port}: {exc}") from exc
        if not box.use_tls and box.start_tls is not False:
            if self._client.has_capability("STARTTLS"):
                await self._starttls()
            elif box.start_tls:
                raise ImapError(f"imap: {box.host} does not offer STARTTLS, which the URL requires")
        _check(await self._call(self._client.login(box.username, box.password)), "LOGIN")
        lines = _check(await self._call(self._client.select(_quoted(box.folder))), "SELECT")
        found = next((m for line in lines if (m := _UIDVALIDITY.search(line))), None)
        if found is None:
            raise ImapError(f"imap: SELECT {box.folder} named no UIDVALIDITY")
        self.uidvalidity = int(found.group(1))

    async def _starttls(self) -> None:
        """RFC 3501 §6.2.1: STARTTLS, then TLS on the same socket, then ask CAPABILITY again."""
        assert self._client is not None
        protocol = self._client.protocol
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        _check(await self._call(protocol.execute(command)), "STARTTLS")
        try:
            transport = await asyncio.wait_for(
                protocol.loop.start_tls(
                    protocol.transport, protocol, self._tls(), server_hostname=self.mailbox.host
                ),
                self.timeout,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            raise ImapError(f"imap: STARTTLS with {self.mailbox.host} failed: {exc}") from exc
        protocol.transport = transport
        # What the server said before TLS may have been tampered with: ask again.
        await self._call(protocol.capability())

    async def _call(self, step: Awaitable[T]) -> T:
        """Await one command, failing at once if the connection drops meanwhile."""
        task = asyncio.ensure_future(step)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
        if task in done:
            try:
                return task.result()
            except (aioimaplib.AioImapException, OSError, TimeoutError) as exc:
                raise ImapError(f"imap: {type(exc).__name__}: {exc}") from exc
        task.cancel()
        if self._lost.is_set():
            raise ImapError("imap: connection lost")
        raise ImapError(f"imap: no answer within {self.timeout:g}s")

    async def new_uids(self, after: int) -> list[int]:
        """UIDs above `after`, ascending (`n:*` always names the last message; drop it)."""
        assert self._client is not None
        response = await self._call(self._client.uid_search(f"UID {after + 1}:*", charset=None))
        uids: set[int] = set()
        # aioimaplib hands the untagged `* SEARCH 1 2` over as `1 2`; the last line is the tag's.
        for line in _check(response, "UID SEARCH")[:-1]:
            words = line.split()
            if words and words[0].upper() == b"SEARCH":
                words = words[1:]
            if all(w.isdigit() for w in words):
                uids.update(int(w) for w in words)
        return sorted(uid for uid in uids if uid > after)

    async def fetch(self, uid: int) -> bytes | None:
        """The raw message with this UID, without setting \\Seen; None if it is gone."""
        assert self._client is not None
        response = await self._call(self._client.uid("fetch", str(uid), "(UID BODY.PEEK[])"))
        lines = _check(response, "UID FETCH")
        for index, line in enumerate(lines[:-1]):
            if not isinstance(line, bytes) or _LITERAL.search(line) is None:
                continue
            after = lines[index + 2] if index + 2 < len(lines) else b""
            found = _UID.search(line) or _UID.search(after if isinstance(after, bytes) else b"")
            if found is not None and int(found.group(1)) != uid:
                continue
            return bytes(lines[index + 1])
        return None

    async def flag(self, uid: int, keyword: str) -> None:
        """Set a keyword on a message, e.g. `$ChatgateFailed` for one we could not import."""
        assert self._client is not None
        _check(
            await self._call(self._client.uid("store", str(uid), f"+FLAGS ({keyword})")), "STORE"
        )

    async def idle(self, renew_s: float, stop: asyncio.Event) -> None:
        """IDLE until the server reports a change, `renew_s` passes or `stop` is set."""
        client = self._client
        assert client is not None
        try:
            idling = await self._call(client.idle_start(timeout=renew_s))
        except ImapError:
            raise
        push = asyncio.ensure_future(client.wait_server_push(timeout=renew_s + 5))
        lost = asyncio.ensure_future(self._lost.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({push, lost, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (push, lost, stopped):
                task.cancel()
        if self._lost.is_set():
            idling.cancel()
            raise ImapError("imap: connection lost while idling")
        client.idle_done()
        await self._call(asyncio.shield(idling))

    async def close(self) -> None:
        """Log out politely when possible, and drop the connection in any case."""
        client, self._client = self._client, None
        if client is None:
            return
        polite = client.get_state() in {"AUTH", "SELECTED", "NONAUTH"}
        # A courtesy, skipped mid-IDLE (the server would not answer before DONE):
        # the server drops the session anyway.
        if polite and not self._lost.is_set() and not client.has_pending_idle():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.logout(), min(self.timeout, 2.0))
        transport = client.protocol.transport
        if transport is not None:
            transport.close()
        for task in list(client.tasks):
            task.cancel()
