"""Webhook delivery: POST queued updates in order, retrying with backoff like Telegram does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from gateway.sandbox.telegram.state import BotAccount

Sleeper = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class WebhookPolicy:
    """Retry schedule; Telegram's real numbers are undocumented, tests make them tiny."""

    timeout: float = 60.0
    initial_backoff: float = 1.0
    factor: float = 2.0
    max_backoff: float = 60.0
    max_attempts: int | None = None

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based)."""
        return min(self.max_backoff, self.initial_backoff * self.factor ** (attempt - 1))


class WebhookDelivery:
    """One task per bot with a webhook, sending its pending updates one at a time, in order."""

    def __init__(
        self, policy: WebhookPolicy, wall_clock: Callable[[], float], sleep: Sleeper
    ) -> None:
        self._policy = policy
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.attempts: list[tuple[int, int, str]] = []

    def start(self, bot: BotAccount) -> None:
        """Make sure a delivery task runs for this bot."""
        task = self._tasks.get(bot.id)
        if task is None or task.done():
            self._tasks[bot.id] = asyncio.get_running_loop().create_task(
                self._run(bot), name=f"telegram-webhook-{bot.id}"
            )

    async def stop(self, bot: BotAccount) -> None:
        """Stop delivering for this bot (deleteWebhook or polling takes over)."""
        task = self._tasks.pop(bot.id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def aclose(self) -> None:
        """Cancel every task and close the HTTP session."""
        for task in self._tasks.values():
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self, bot: BotAccount) -> None:
        attempt = 0
        while bot.webhook is not None:
            await bot.updates.wait_for_pending()
            hook = bot.webhook
            if hook is None:
                return
            update = bot.updates.pending[0]
            error = await self._post(hook.url, hook.secret_token, update)
            self.attempts.append((bot.id, update["update_id"], error or "ok"))
            if error is None:
                bot.updates.delivered(update)
                attempt = 0
                continue
            hook.last_error_date = int(self._wall_clock())
            hook.last_error_message = error
            attempt += 1
            if self._policy.max_attempts is not None and attempt >= self._policy.max_attempts:
                bot.updates.delivered(update)
                attempt = 0
                continue
            await self._sleep(self._policy.backoff(attempt))

    async def _post(self, url: str, secret: str | None, update: dict[str, object]) -> str | None:
        """POST one update; None on a 2xx answer, else Telegram's last_error_message text."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        try:
            async with self._session.post(
                url,
                json=update,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._policy.timeout),
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"Wrong response from the webhook: {response.status} {response.reason}"
        except TimeoutError:
            return "Read timeout expired"
        except aiohttp.ClientConnectionError as exc:
            return f"Connection refused: {exc}"
        except aiohttp.ClientError as exc:
            return f"Failed to deliver: {exc}"
