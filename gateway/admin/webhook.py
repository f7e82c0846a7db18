"""The outgoing webhook: one POST per new approval request and per decision, delivered in the background.

Rules kept here:
* **Never blocks the API.** `enqueue` only appends to a bounded in-memory queue; one delivery task posts the
  messages in order. A full queue drops the new message and logs it: the webhook is a notification, the
  audit trail is the record (every decision is audited whether or not its webhook arrives).
* **Retries with backoff.** A connection error, a timeout, 408, 429 or a 5xx answer is retried after 0.5 s,
  1 s, 2 s, ... (capped at 30 s, honouring a `Retry-After` in seconds up to that cap) until `max_attempts`;
  other answers (400, 403, 404...) mean the receiver will never accept this message, so it is dropped at once.
* **The URL is a secret.** Slack incoming-webhook URLs (and many others) are bearer credentials: logs name
  only the scheme and host, never the path, query or configured headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from gateway.admin.config import WebhookConfig
from gateway.admin.views import event_json, event_slack
from gateway.store.approvals_base import StoreEvent

log = logging.getLogger("streamgate.admin.webhook")

MAX_BACKOFF_S = 30.0
_RETRYABLE = frozenset({408, 425, 429})
_MAX_RESPONSE_HEAD = 16 * 1024


class WebhookDeliveryError(Exception):
    """One attempt failed; `retryable` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def payload_for(event: StoreEvent, config: WebhookConfig, public_url: str | None) -> dict[str, Any]:
    return event_slack(event, public_url) if config.format == "slack" else event_json(event, public_url)


def backoff_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    return float(min(MAX_BACKOFF_S, 0.5 * 2.0 ** (attempt - 1)))


async def post_json(config: WebhookConfig, payload: dict[str, Any]) -> int:
    """POST `payload` once: the 2xx status, or WebhookDeliveryError. Always closes its socket."""
    parts = urlsplit(config.url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = json.dumps(payload, separators=(",", ":")).encode()
    host_header = parts.netloc.rsplit("@", 1)[-1]
    head = [
        f"POST {target} HTTP/1.1",
        f"Host: {host_header}",
        "User-Agent: streamgate-webhook",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in config.headers.items()),
    ]
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    context = ssl.create_default_context(cafile=config.ca_file) if secure else None

    async def exchange() -> tuple[int, dict[str, str]]:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if secure else None, limit=_MAX_RESPONSE_HEAD
        )
        try:
            writer.write(request)
            await writer.drain()
            raw = await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        lines = raw.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
            raise WebhookDeliveryError("the answer is not HTTP/1.x", retryable=True)
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return int(status_line[1]), headers

    try:
        status, headers = await asyncio.wait_for(exchange(), config.timeout)
    except TimeoutError:
        raise WebhookDeliveryError(f"no answer within {config.timeout:g}s", retryable=True) from None
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise WebhookDeliveryError("incomplete or oversized answer", retryable=True) from None
    except ssl.SSLError as exc:
        raise WebhookDeliveryError(f"TLS error: {exc.reason or exc}", retryable=True) from None
    except OSError as exc:
        raise WebhookDeliveryError(exc.strerror or type(exc).__name__, retryable=True) from None
    if 200 <= status < 300:
        return status
    retry_after = None
    if headers.get("retry-after", "").isdigit():
        retry_after = min(MAX_BACKOFF_S, float(headers["retry-after"]))
    raise WebhookDeliveryError(
        f"HTTP status {status}", retryable=status >= 500 or status in _RETRYABLE, retry_after=retry_after
    )


class WebhookSender:
    """Delivers webhook messages in order on the running loop, with retries; `start`, later `aclose`."""

    def __init__(
        self,
        config: WebhookConfig,
        public_url: str | None = None,
        *,
        post: Callable[[WebhookConfig, dict[str, Any]], Any] = post_json,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.public_url = public_url
        self._post = post
        self._sleep = sleep
        self._queue: deque[tuple[int, dict[str, Any]]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.delivered = 0
        self.dropped = 0
        self.attempts = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def reconfigure(self, config: WebhookConfig, public_url: str | None) -> None:
        """Later messages (including queued ones) go to the new destination in the new format."""
        self.config = config
        self.public_url = public_url

    def enqueue(self, event: StoreEvent) -> bool:
        """Queue one event's message; False (and logged) when the queue is full or the sender is closing."""
        if self._closing or len(self._queue) >= self.config.queue_size:
            self.dropped += 1
            log.warning(
                "webhook to %s: queue full, dropped the message for %s event of request %s",
                self.config.destination,
                event.kind,
                event.record.id,
            )
            return False
        self._queue.append((event.seq, payload_for(event, self.config, self.public_url)))
        self._wakeup.set()
        return True

    async def aclose(self, timeout: float) -> None:
        """Stop taking messages; deliver what is queued within `timeout` seconds, then give up (logged)."""
        self._closing = True
        self._wakeup.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            if self._queue:
                log.warning(
                    "webhook to %s: %d undelivered message(s) dropped at shutdown",
                    self.config.destination,
                    len(self._queue),
                )

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            seq, payload = self._queue[0]
            await self._deliver(seq, payload)
            self._queue.popleft()

    async def _deliver(self, seq: int, payload: dict[str, Any]) -> None:
        for attempt in range(1, self.config.max_attempts + 1):
            self.attempts += 1
            try:
                await self._post(self.config, payload)
            except WebhookDeliveryError as exc:
                if not exc.retryable or attempt == self.config.max_attempts:
                    self.dropped += 1
                    log.error(
                        "webhook to %s: giving up on event %d after %d attempt(s): %s",
                        self.config.destination,
                        seq,
                        attempt,
                        exc,
                    )
                    return
                delay = exc.retry_after if exc.retry_after is not None else backoff_delay(attempt)
                log.warning(
                    "webhook to %s: attempt %d for event %d failed (%s); retrying in %.1fs",
                    self.config.destination,
                    attempt,
                    seq,
                    exc,
                    delay,
                )
                await self._sleep(delay)
            else:
                self.delivered += 1
                return
