"""Outbound messages: stored first, then sent through rate-limited lanes.

`enqueue` writes the Message and its Delivery rows (one per part of a long
text) in one transaction and only then puts the first delivery id on the broker
queue. Workers take ids off the queue and send each through its channel adapter.

Order within a chat is kept by the store, not the queue: only the chat's oldest
unsettled delivery (its head) is ever sent, claimed by a compare-and-set on its
status, and when it settles the next one is queued. A retried head therefore
holds back everything after it, across processes and restarts.

Delivery is at-least-once: a process that dies between the platform's answer
and our write leaves the row `sending`; `recover()` sends it again after
`sending_timeout_s`. VK adapters derive `random_id` from the delivery id, which
makes that repeat a no-op there; Telegram, SMS and email may show it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway.broker import Broker, Job, Subscription
from gateway.channels import Attachment, Button, ChannelAdapter, Failure, Outbound, Sent
from gateway.lanes import RateLimits, RetryPolicy, buckets, chat_key, lane_key
from gateway.splitting import SPLIT_LIMITS, split_html, split_text, strip_tags
from storage.db import Database
from storage.errors import NotFound
from storage.identities import Identities
from storage.messages import Messages, NewMessage
from storage.models import Author, Delivery, DeliveryStatus, Direction, Message, utcnow
from storage.updates import update_by_id

__all__ = ["Enqueued", "Outbox", "RateLimits", "RetryPolicy", "StageHook", "Target"]

log = logging.getLogger("chatgate.outbox")

QUEUE = "outbox"
SETTLED_CHANNEL = "outbox:settled"
PURPOSES = frozenset({"service", "transactional", "marketing"})
PENDING = (DeliveryStatus.queued.value, DeliveryStatus.sending.value)
# A job may come a little early by the broker's clock; not worth a round trip.
_EARLY_OK = timedelta(milliseconds=50)
# A delivery behind one in flight comes back after this, in case the hand-off missed it.
_LOOK_AGAIN_S = 1.0
_ERROR_MAX = 1000


@dataclass(frozen=True, slots=True)
class Target:
    """Who a message goes to and on which bot."""

    conversation_id: int
    customer_id: int
    channel: str
    account: str
    address: str
    identity_id: int | None = None


@dataclass(frozen=True, slots=True)
class Enqueued:
    """The stored message and its deliveries, in sending order."""

    message_id: int
    delivery_ids: tuple[int, ...]
    delay_s: float = 0.0  # not before this many seconds from when it was staged
    also: tuple[int, ...] = ()  # copies staged beside it (the managers' mirror), queued too


Claimed = sa.Row[Any]
"""A delivery as its claim returned it: every column, read as attributes (`row.channel`).
Not a `Delivery`: the model cost about 50 µs a send to build, for nothing the send needs."""
FailedHook = Callable[[Delivery, str], Awaitable[None]]
"""Told of a delivery that failed finally at an unreachable address (blocked, hard
bounce), after it was recorded: the managers' desk sends the reply elsewhere."""
StageHook = Callable[[AsyncSession, Message, Target], Awaitable[Sequence[int]]]
"""Told of every message `stage()` stored, in its transaction; returns delivery ids
it staged itself (with `stage_copy`), which `release()` queues with the message."""


class Outbox:
    """Stores outbound messages and dispatches them; `start()` / `aclose()`."""

    def __init__(
        self,
        db: Database,
        broker: Broker,
        adapters: Mapping[tuple[str, str], ChannelAdapter] | Iterable[ChannelAdapter] = (),
        *,
        limits: RateLimits | None = None,
        retry: RetryPolicy | None = None,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        workers: int = 64,
        queue: str = QUEUE,
        send_timeout_s: float = 30.0,
        sending_timeout_s: float = 120.0,
        recover_every_s: float = 30.0,
        max_inline_wait_s: float = 1.0,
        block_s: float = 1.0,
        grace_s: float = 5.0,
    ) -> None:
        if sending_timeout_s <= send_timeout_s:
            raise ValueError("sending_timeout_s must exceed send_timeout_s")
        self.db = db
        self.broker = broker
        self.adapters: dict[tuple[str, str], ChannelAdapter] = {}
        if isinstance(adapters, Mapping):
            self.adapters.update(adapters)
        else:
            for adapter in adapters:
                self.register(adapter)
        self.limits = limits or RateLimits()
        self.retry = retry or RetryPolicy()
        self._now = now
        self._sleep = sleep
        self._rand = rand
        self._worker_count = workers
        self._queue = queue
        self._send_timeout_s = send_timeout_s
        self._sending_timeout_s = sending_timeout_s
        self._recover_every_s = recover_every_s
        self._max_inline_wait_s = max_inline_wait_s
        self._block_s = block_s
        self._grace_s = grace_s
        self._name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._consumer: asyncio.Task[None] | None = None
        self._handling: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._subscription: Subscription | None = None
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._stopping = False
        self._stage_hooks: list[StageHook] = []
        self._failed_hooks: list[FailedHook] = []

    def on_unreachable(self, hook: FailedHook) -> None:
        """Call `hook` with each delivery that failed finally because the address is gone."""
        self._failed_hooks.append(hook)

    def on_stage(self, hook: StageHook) -> None:
        """Call `hook` for every stored outbound message (the managers' mirror)."""
        self._stage_hooks.append(hook)

    def register(self, adapter: ChannelAdapter) -> None:
        """Send (adapter.channel, adapter.account) deliveries through `adapter`."""
        self.adapters[(adapter.channel, adapter.account)] = adapter

    # ------------------------------------------------------------------ enqueue

    async def enqueue(self, target: Target, **content: Any) -> Enqueued:
        """Store the message and its deliveries, then queue them; nothing is sent yet.

        Takes the keyword arguments of `stage()`.
        """
        async with self.db.session() as session:
            enqueued = await self.stage(session, target, **content)
        await self.release(enqueued)
        return enqueued

    async def release(self, *batches: Enqueued) -> None:
        """Queue what `stage()` wrote, after its transaction committed."""
        for enqueued in batches:
            # Later parts follow their predecessor (see _settled); queue the head only.
            if enqueued.delivery_ids:
                await self._put(enqueued.delivery_ids[0], enqueued.delay_s)
            for copy_id in enqueued.also:
                await self._put(copy_id)

    async def stage_copy(
        self,
        session: AsyncSession,
        *,
        message_id: int,
        customer_id: int,
        channel: str,
        account: str,
        address: str,
        payload: Mapping[str, Any],
        purpose: str = "desk",
    ) -> int:
        """One more delivery of a stored message, elsewhere (a copy for the managers).

        No new Message row and no stage hooks: the copy is not part of the
        customer's dialogue. Its id goes to `release()` through `Enqueued.also`.
        """
        row = _delivery_row(
            message_id=message_id,
            customer_id=customer_id,
            channel=channel,
            account=account,
            address=address,
            purpose=purpose,
            payload=dict(payload),
            now=self._now(),
        )
        (delivery_id,) = await _insert_deliveries(session, [row])
        return delivery_id

    async def stage(
        self,
        session: AsyncSession,
        target: Target,
        *,
        text: str = "",
        html: str | None = None,
        subject: str | None = None,
        buttons: Sequence[Sequence[Button]] = (),
        inline: bool = True,
        attachments: Sequence[Attachment] = (),
        author: str = Author.bot,
        author_ref: str | None = None,
        purpose: str = "service",
        thread_id: int | None = None,
        meta: Mapping[str, Any] | None = None,
        not_before: datetime | None = None,
    ) -> Enqueued:
        """Write the message and its deliveries in the caller's transaction; queue nothing.

        Call `release()` with the result once that transaction has committed.

        A text longer than the channel's limit becomes several deliveries of one
        message, sent in order; buttons go with the last part, attachments with
        the first.
        """
        if author not in {a.value for a in Author} or author == Author.customer:
            raise ValueError(f"author must be bot, manager, flow or system, not {author!r}")
        if purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {sorted(PURPOSES)}, not {purpose!r}")
        parts = _parts(target.channel, text, html)
        now = self._now()
        button_rows = [[_button_json(b) for b in row] for row in buttons if row]
        message, _ = await Messages(session).append(
            NewMessage(
                conversation_id=target.conversation_id,
                customer_id=target.customer_id,
                channel=target.channel,
                account=target.account,
                direction=Direction.outbound,
                author=author,
                author_ref=author_ref,
                text=text or strip_tags(html or ""),
                attachments=[a.as_json() for a in attachments],
                meta={"purpose": purpose, "parts": len(parts), **dict(meta or {})},
                sent_at=now,
            )
        )
        assert message.id is not None
        deliveries = []
        for index, (part_text, part_html) in enumerate(parts):
            payload: dict[str, Any] = {"text": part_text, "inline": inline}
            if part_html is not None:
                payload["html"] = part_html
            if subject is not None:
                payload["subject"] = subject
            if thread_id is not None:
                payload["thread_id"] = thread_id
            if index == len(parts) - 1 and button_rows:
                payload["buttons"] = button_rows
            if index == 0 and attachments:
                payload["attachments"] = [a.as_json() for a in attachments]
            if meta:
                payload["meta"] = dict(meta)
            if len(parts) > 1:
                payload["part"] = [index + 1, len(parts)]
            deliveries.append(
                _delivery_row(
                    message_id=message.id,
                    customer_id=target.customer_id,
                    identity_id=target.identity_id,
                    channel=target.channel,
                    account=target.account,
                    address=target.address,
                    purpose=purpose,
                    next_attempt_at=not_before,
                    payload=payload,
                    now=now,
                )
            )
        ids = await _insert_deliveries(session, deliveries)
        also: list[int] = []
        for hook in self._stage_hooks:
            also.extend(await hook(session, message, target))
        log.info(
            "outbox.queued",
            extra={
                "message_id": message.id,
                "delivery_ids": list(ids),
                "channel": target.channel,
                "account": target.account,
                "parts": len(ids),
            },
        )
        delay = (not_before - now).total_seconds() if not_before is not None else 0.0
        return Enqueued(message.id, ids, max(0.0, delay), tuple(also))

    async def _put(self, delivery_id: int, delay: float = 0.0) -> None:
        try:
            await self.broker.enqueue(self._queue, str(delivery_id), delay=max(0.0, delay))
        except Exception:
            # Stored as queued, so recover() picks it up: late, not lost.
            log.warning("outbox.enqueue_failed", extra={"delivery_id": delivery_id}, exc_info=True)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Re-queue what a previous run left, then start taking jobs."""
        self._stopping = False
        self._subscription = await self.broker.subscribe(SETTLED_CHANNEL)
        self._background.append(asyncio.create_task(self._listen(self._subscription)))
        await self.recover()
        self._consumer = asyncio.create_task(self._work())
        self._background.append(asyncio.create_task(self._recover_periodically()))
        log.info("outbox.started", extra={"workers": self._worker_count, "worker_name": self._name})

    async def aclose(self) -> None:
        """Stop taking jobs, let sends in flight finish (up to `grace_s`), then stop."""
        self._stopping = True
        if self._consumer is not None:
            # Jobs it took and had not handed out stay unacked: the broker redelivers them.
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
            self._consumer = None
        handling = list(self._handling)
        if handling:
            _, late = await asyncio.wait(handling, timeout=self._grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*handling, return_exceptions=True)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._subscription is not None:
            await self._subscription.aclose()
            self._subscription = None
        self._background.clear()

    async def _work(self) -> None:
        """Take jobs while fewer than `workers` are being handled, each in a task of its own.

        Different chats' sends overlap (a send mostly waits on the platform); one
        chat's order is kept by the store (`_CLAIM`), not by this loop.
        """
        consumer = f"{self._name}-0"
        while not self._stopping:
            room = self._worker_count - len(self._handling)
            if room <= 0:
                await asyncio.wait(self._handling, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                jobs = await self.broker.consume(
                    self._queue, consumer, count=room, block_s=self._block_s
                )
            except Exception:
                log.warning("outbox.consume_failed", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for job in jobs:
                task = asyncio.create_task(self._handle_logged(job))
                self._handling.add(task)
                task.add_done_callback(self._handling.discard)

    async def _handle_logged(self, job: Job) -> None:
        try:
            await self._handle(job)
        except Exception:
            # Unacked: the broker hands the job out again after its timeout.
            log.exception("outbox.dispatch_failed", extra={"job": job.payload})

    async def _handle(self, job: Job) -> None:
        try:
            delivery_id = int(job.payload)
        except ValueError:
            log.error("outbox.bad_job", extra={"job": job.payload})
        else:
            await self.dispatch(delivery_id)
        await self.broker.ack(self._queue, job.id)

    async def _recover_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._recover_every_s)
            try:
                # One process sweeps at a time; the lock lapses if it dies.
                if await self.broker.try_lock("outbox:recover", self._recover_every_s * 2):
                    await self.recover()
            except Exception:
                log.warning("outbox.recover_failed", exc_info=True)

    async def recover(self, *, batch: int = 1000) -> int:
        """Queue every chat's due head again; revive sends a dead process left.

        Run at start and periodically. Rows `sending` for longer than
        `sending_timeout_s` belonged to a process that died mid-send: they are
        sent again (at-least-once; exactly-once on VK thanks to random_id).
        """
        now = self._now()
        async with self.db.session() as session:
            revived = await session.execute(
                sa.update(Delivery)
                .where(
                    col(Delivery.status) == DeliveryStatus.sending,
                    col(Delivery.updated_at) < now - timedelta(seconds=self._sending_timeout_s),
                )
                .values(status=DeliveryStatus.queued, next_attempt_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            heads = (
                sa.select(sa.func.min(col(Delivery.id)))
                .where(col(Delivery.status).in_(PENDING))
                .group_by(col(Delivery.channel), col(Delivery.account), col(Delivery.address))
            )
            due = await session.scalars(
                sa.select(col(Delivery.id))
                .where(
                    col(Delivery.id).in_(heads),
                    col(Delivery.status) == DeliveryStatus.queued,
                    sa.or_(
                        col(Delivery.next_attempt_at).is_(None),
                        col(Delivery.next_attempt_at) <= now,
                    ),
                )
                .order_by(col(Delivery.id))
                .limit(batch)
            )
            ids = [i for i in due if i is not None]
        revived_count = getattr(revived, "rowcount", 0) or 0
        for delivery_id in ids:
            await self._put(delivery_id)
        if ids or revived_count:
            log.info("outbox.recovered", extra={"requeued": len(ids), "revived": revived_count})
        return len(ids)

    # ----------------------------------------------------------------- dispatch

    async def dispatch(self, delivery_id: int) -> None:
        """One step for one delivery: send it if it is its chat's due head."""
        claimed, retry_in = await self._claim_head(delivery_id)
        if claimed is None:
            if retry_in is not None:
                await self._put(delivery_id, retry_in)
            return
        # Tokens and pauses are checked after the claim, so a chat's order holds;
        # a claim that must wait is handed back unused.
        wait = await self._take_tokens(claimed)
        if wait is None:
            wait = await self._paused_for(claimed)
        if wait:
            await self._defer(claimed, wait, claimed=True)
            return
        result = await self._send(claimed)
        await self._record(claimed, result)

    async def _load(self, delivery_id: int) -> Delivery | None:
        async with self.db.session() as session:
            return await session.get(Delivery, delivery_id, populate_existing=True)

    async def _claim_head(self, delivery_id: int) -> tuple[Claimed | None, float | None]:
        """In one transaction: the delivery, if due and its chat's head, marked `sending`.

        Returns (None, seconds) when it is not due yet, (None, None) when it is not
        this call's to send: settled, in flight elsewhere, or behind an earlier one.
        Claims of concurrent sends share a commit (Database.batched).
        """
        now = self._now()

        async def unit(session: AsyncSession) -> tuple[Claimed | None, float | None]:
            # One compare-and-set does it all in the usual case; the reasons are
            # looked up only when it claimed nothing.
            claimed = (
                await session.execute(
                    _CLAIM, {"claim_id": delivery_id, "due_by": now + _EARLY_OK, "claimed_at": now}
                )
            ).first()
            if claimed is not None:
                return claimed, None
            return None, await _not_claimed(session, delivery_id, now)

        return await self.db.batched(unit, key=str(delivery_id))

    async def _take_tokens(self, row: Claimed) -> float | None:
        """None once every bucket gave a token; else how long to come back after."""
        for bucket in buckets(self.limits, row.channel, row.account, row.address):
            for _ in range(10):
                wait = await self.broker.take(
                    bucket.key, rate_per_s=bucket.rate_per_s, burst=bucket.burst
                )
                if wait <= 0:
                    break
                if wait > self._max_inline_wait_s:
                    return wait
                await self._sleep(wait)
            else:
                return self._max_inline_wait_s
        return None

    async def _paused_for(self, row: Claimed) -> float:
        return max(
            await self.broker.paused_for(lane_key(row.channel, row.account)),
            await self.broker.paused_for(chat_key(row.channel, row.account, row.address)),
        )

    async def _defer(self, row: Claimed, wait: float, *, claimed: bool = False) -> None:
        """Come back to the delivery in `wait` seconds; a claim is handed back unused."""
        status = DeliveryStatus.sending if claimed else DeliveryStatus.queued
        values: dict[str, Any] = {"next_attempt_at": self._now() + timedelta(seconds=wait)}
        if claimed:
            values.update(status=DeliveryStatus.queued, attempts=col(Delivery.attempts) - 1)
        async with self.db.session() as session:
            await session.execute(
                sa.update(Delivery)
                .where(col(Delivery.id) == row.id, col(Delivery.status) == status)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        log.info(
            "outbox.deferred",
            extra={"delivery_id": row.id, "channel": row.channel, "wait_s": round(wait, 3)},
        )
        await self._put(row.id, wait)

    async def _send(self, row: Claimed) -> Sent | Failure:
        adapter = self.adapters.get((row.channel, row.account))
        if adapter is None:
            return Failure(f"no adapter for {row.channel}:{row.account}", retryable=True)
        try:
            # asyncio.timeout, not wait_for: no task switch between the pause check
            # and the request, so a pause set meanwhile cannot be missed in-process.
            async with asyncio.timeout(self._send_timeout_s):
                return await adapter.send(_outbound(row))
        except TimeoutError:
            return Failure(f"timeout after {self._send_timeout_s:g}s", retryable=True)
        except Exception as exc:
            log.warning("outbox.adapter_raised", extra={"delivery_id": row.id}, exc_info=True)
            return Failure(f"{type(exc).__name__}: {exc}", retryable=True)

    async def _record(self, row: Claimed, result: Sent | Failure) -> None:
        now = self._now()
        fields = {
            "delivery_id": row.id,
            "channel": row.channel,
            "account": row.account,
            "attempt": row.attempts,
        }
        if isinstance(result, Sent):
            successor = await self._update(
                row,
                status=DeliveryStatus.sent,
                sent_at=now,
                external_id=result.external_id,
                segments=result.segments,
                error=None,
                next_attempt_at=None,
            )
            log.info("outbox.sent", extra={**fields, "external_id": result.external_id})
            await self._settled(row, successor)
            return
        reason = result.reason[:_ERROR_MAX]
        rate_limited = result.retryable and result.retry_after is not None
        age = (now - row.created_at).total_seconds()
        gave_up = (not rate_limited and row.attempts >= self.retry.max_attempts) or (
            age >= self.retry.max_age_s
        )
        if result.retryable and not gave_up:
            if rate_limited:
                delay = float(result.retry_after or 0) + self.limits.pause_margin_s
                key = (
                    lane_key(row.channel, row.account)
                    if result.lane_wide
                    else chat_key(row.channel, row.account, row.address)
                )
                await self.broker.pause(key, delay)
                log.warning(
                    "outbox.paused",
                    extra={
                        **fields,
                        "pause_s": delay,
                        "lane_wide": result.lane_wide,
                        "reason": reason,
                    },
                )
            else:
                delay = self.retry.backoff(row.attempts, self._rand)
                log.warning(
                    "outbox.retry", extra={**fields, "delay_s": round(delay, 3), "reason": reason}
                )
            await self._update(
                row,
                status=DeliveryStatus.queued,
                next_attempt_at=now + timedelta(seconds=delay),
                error=reason,
            )
            await self._put(row.id, delay)
            return
        if result.retryable:
            reason = f"{reason} (gave up after {row.attempts} attempts)"[:_ERROR_MAX]
        successor = await self._update(
            row,
            status=DeliveryStatus.failed,
            final=True,
            failed_at=now,
            error=reason,
            next_attempt_at=None,
            unreachable_identity=row.identity_id if result.unreachable else None,
        )
        log.warning(
            "outbox.failed",
            extra={**fields, "reason": reason, "unreachable": result.unreachable},
        )
        await self._settled(row, successor)
        if result.unreachable:
            delivery = Delivery(**row._asdict())
            for hook in self._failed_hooks:
                try:
                    await hook(delivery, reason)
                except Exception:
                    log.exception("outbox.failed_hook", extra={"delivery_id": row.id})

    async def _update(
        self, row: Claimed, *, unreachable_identity: int | None = None, **values: Any
    ) -> int | None:
        """Record an outcome; returns the chat's next delivery, found by the same statement.

        Outcomes of concurrent sends share a commit (Database.batched).
        """
        now = self._now()

        async def unit(session: AsyncSession) -> int | None:
            successor: int | None = await update_by_id(
                session,
                _DELIVERY,
                row.id,
                {"updated_at": now, **values},
                returning=_SUCCESSOR,
                returning_params={
                    "chat_channel": row.channel,
                    "chat_account": row.account,
                    "chat_address": row.address,
                },
            )
            if unreachable_identity is not None:
                with contextlib.suppress(NotFound):
                    await Identities(session).mark_unreachable(
                        unreachable_identity, str(values.get("error") or "failed")
                    )
            return successor

        # In the lane of the chat's inbound messages: both may touch its identity.
        return await self.db.batched(unit, key=chat_key(row.channel, row.account, row.address))

    async def _settled(self, row: Claimed, successor: int | None) -> None:
        """Tell waiters, then queue the chat's next delivery."""
        self._notify(row.id)
        try:
            await self.broker.publish(SETTLED_CHANNEL, str(row.id))
        except Exception:
            log.warning("outbox.publish_failed", extra={"delivery_id": row.id}, exc_info=True)
        if successor is not None:
            await self._put(successor)

    # ---------------------------------------------------------------- waiting

    async def wait_settled(self, delivery_id: int, timeout_s: float = 30.0) -> Delivery:
        """The delivery once sent or finally failed; TimeoutError after `timeout_s`.

        Wakes on this process's own sends, on other processes' through the
        broker's pub/sub, and looks at the store every second regardless.
        """
        event = asyncio.Event()
        self._waiters.setdefault(delivery_id, set()).add(event)
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    event.clear()
                    row = await self._load(delivery_id)
                    if row is None:
                        raise NotFound("delivery", delivery_id)
                    if row.status not in PENDING:
                        return row
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), 1.0)
        finally:
            waiters = self._waiters.get(delivery_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[delivery_id]

    def _notify(self, delivery_id: int) -> None:
        for event in self._waiters.get(delivery_id, ()):
            event.set()

    async def _listen(self, subscription: Subscription) -> None:
        async for message in subscription:
            with contextlib.suppress(ValueError):
                self._notify(int(message))


def _parts(channel: str, text: str, html: str | None) -> list[tuple[str, str | None]]:
    """(text, html) per part; HTML, when given, decides where the parts break."""
    limit = SPLIT_LIMITS.get(channel)
    if html is not None:
        if limit is None or len(html) <= limit:
            return [(text or strip_tags(html), html)]
        return [(strip_tags(part), part) for part in split_html(html, limit)]
    if limit is None:
        return [(text, None)]
    return [(part, None) for part in split_text(text, limit)]


def _button_json(button: Button) -> dict[str, Any]:
    out: dict[str, Any] = {"text": button.text}
    if button.payload is not None:
        out["payload"] = button.payload
    if button.url is not None:
        out["url"] = button.url
    if button.request_contact:
        out["request_contact"] = True
    return out


def _outbound(row: Claimed) -> Outbound:
    payload = row.payload
    return Outbound(
        delivery_id=row.id,
        channel=row.channel,
        account=row.account,
        address=row.address,
        text=str(payload.get("text", "")),
        html=payload.get("html"),
        subject=payload.get("subject"),
        buttons=tuple(
            tuple(Button(**button) for button in button_row)
            for button_row in payload.get("buttons", ())
        ),
        inline=bool(payload.get("inline", True)),
        thread_id=payload.get("thread_id"),
        attachments=tuple(Attachment(**a) for a in payload.get("attachments", ())),
        purpose=row.purpose,
        meta=payload.get("meta", {}),
    )


async def _not_claimed(session: AsyncSession, delivery_id: int, now: datetime) -> float | None:
    """Why a claim failed: seconds until it is due, or None when it is not ours to send.

    Not ours: unknown, settled, in flight elsewhere (a duplicate job), or behind an
    earlier message to the chat (which queues it when it settles). Behind one in
    flight, it is looked at again shortly all the same: that one's record looks for
    its successor in its own transaction, which may have begun before this delivery
    was committed, and would then settle without handing the chat over.
    """
    row = await session.get(Delivery, delivery_id, populate_existing=True)
    if row is None:
        log.warning("outbox.unknown_delivery", extra={"delivery_id": delivery_id})
        return None
    if row.status != DeliveryStatus.queued:
        return None
    if row.next_attempt_at is not None and row.next_attempt_at > now + _EARLY_OK:
        return (row.next_attempt_at - now).total_seconds()
    head_status = await session.scalar(
        _HEAD_STATUS, {"channel": row.channel, "account": row.account, "address": row.address}
    )
    return _LOOK_AGAIN_S if head_status == DeliveryStatus.sending else None


def _delivery_row(
    *,
    message_id: int,
    customer_id: int,
    channel: str,
    account: str,
    address: str,
    purpose: str,
    payload: dict[str, Any],
    now: datetime,
    identity_id: int | None = None,
    next_attempt_at: datetime | None = None,
) -> dict[str, Any]:
    """A queued delivery for `_insert_deliveries`; the columns left out take their defaults.

    A plain dict, not a `Delivery`: the model cost about 70 µs a row to build, only
    to be read back into a dict for the INSERT.
    """
    return {
        "message_id": message_id,
        "customer_id": customer_id,
        "identity_id": identity_id,
        "channel": channel,
        "account": account,
        "address": address,
        "purpose": purpose,
        "status": DeliveryStatus.queued.value,
        "next_attempt_at": next_attempt_at,
        "payload": payload,
        "created_at": now,
        "updated_at": now,
    }


async def _insert_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> tuple[int, ...]:
    """INSERT the rows in one Core statement (no ORM flush); their ids in the given order."""
    return tuple(await session.scalars(_INSERT_DELIVERIES, rows))


def _oldest_pending(
    channel: Any, account: Any, address: Any, *, besides: Any = None
) -> sa.Select[Any]:
    """The oldest pending delivery to a chat: the only one that may be sent (its head).

    `besides`: a delivery id left out, one being settled.
    """
    head = _DELIVERY.alias("head")
    select = sa.select(sa.func.min(head.c.id)).where(
        head.c.channel == channel,
        head.c.account == account,
        head.c.address == address,
        head.c.status.in_(PENDING),
    )
    return select if besides is None else select.where(head.c.id != besides)


def _claim_statement() -> sa.Update:
    """UPDATE … RETURNING: the delivery, if queued, due and its chat's head, now `sending`.

    Built once, like the other hot statements here: constructing a statement
    costs about as much as running it.
    """
    table = _DELIVERY
    head = _oldest_pending(table.c.channel, table.c.account, table.c.address)
    return (
        sa.update(table)
        .where(
            table.c.id == sa.bindparam("claim_id"),
            table.c.status == DeliveryStatus.queued.value,
            sa.or_(
                table.c.next_attempt_at.is_(None),
                table.c.next_attempt_at <= sa.bindparam("due_by"),
            ),
            table.c.id == head.scalar_subquery(),
        )
        .values(
            status=DeliveryStatus.sending.value,
            attempts=table.c.attempts + 1,
            updated_at=sa.bindparam("claimed_at"),
        )
        .returning(*table.c)
    )


_DELIVERY: sa.Table = Delivery.__table__  # type: ignore[attr-defined]
# Many rows in one INSERT (insertmanyvalues), their ids back in the order given.
_INSERT_DELIVERIES = sa.insert(_DELIVERY).returning(_DELIVERY.c.id, sort_by_parameter_order=True)
# The chat's next delivery, returned by the UPDATE that settles the one with :row_id
# (update_by_id). That row is left out by id: PostgreSQL's subquery still sees it
# pending (the table as it was before the statement), SQLite's unspecified.
_SUCCESSOR = _oldest_pending(
    sa.bindparam("chat_channel"),
    sa.bindparam("chat_account"),
    sa.bindparam("chat_address"),
    besides=sa.bindparam("row_id"),
).scalar_subquery()
_CLAIM = _claim_statement()
_HEAD_STATUS = sa.select(_DELIVERY.c.status).where(
    _DELIVERY.c.id
    == _oldest_pending(
        sa.bindparam("channel"), sa.bindparam("account"), sa.bindparam("address")
    ).scalar_subquery()
)
