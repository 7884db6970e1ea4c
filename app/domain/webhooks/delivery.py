"""Delivery workers: send due outbox events, signed, at least once, in order per request.

Each attempt re-checks the destination (DNS may have changed since registration) and connects to
the checked address; the body is the event as stored, signed by the Standard Webhooks scheme
(``webhook-id`` fixed per event, ``webhook-timestamp`` of the attempt, ``webhook-signature`` under
every valid secret of the subscription). A 2xx answer delivers; anything else is retried with
exponential backoff and jitter until the retry period has passed, then the delivery is ``dead``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import msgspec
from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from app.config import Settings
from app.db.webhooks import WebhookDelivery, WebhookEvent, WebhookSubscription
from app.domain.webhooks.deadlines import upkeep
from app.domain.webhooks.leases import claim_due, settle
from app.domain.webhooks.outbound import AllowList, SendResult, check_destination, post_signed, sender_client
from app.domain.webhooks.services import HISTORY_KEPT, signing_secrets
from app.lib.clock import utcnow
from app.lib.errors import DestinationRefused
from app.lib.leases import Holder, owner_id
from app.lib.logging import get_logger
from app.lib.loops import LoopWatch

__all__ = ("WEBHOOK_ATTEMPTS", "DeliveryWorker", "backoff_seconds", "sign", "start_webhook_work")

logger = get_logger("lethe.webhooks")

WEBHOOK_ATTEMPTS = Counter(
    "lethe_webhook_attempts",
    "Webhook delivery attempts by outcome (delivered, retry, dead, lost: the lease was taken over)",
    ["outcome"],
)
_random = secrets.SystemRandom()


def backoff_seconds(attempts: int, base: float, ceiling: float) -> float:
    """Wait before the next try after ``attempts`` failures: doubling, capped, with equal jitter."""
    delay = min(ceiling, base * 2 ** max(attempts - 1, 0))
    return float(delay / 2 + _random.uniform(0, delay / 2))


def sign(secrets_: list[str], message_id: str, timestamp: datetime, body: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64>`` per valid secret, space separated."""
    text = body.decode()
    return " ".join(Webhook(s).sign(message_id, timestamp, text) for s in secrets_)


class DeliveryWorker:
    """One sender: leases a batch of due deliveries, signs and posts them concurrently, records
    the attempts (each fenced by its own claim)."""

    def __init__(self, settings: Settings, store_engine: AsyncEngine, name: str) -> None:
        self.settings = settings
        self.sessions = async_sessionmaker(store_engine, expire_on_commit=False)
        self.owner = owner_id(name)
        self.allowed = AllowList.parse(settings.webhook_allowed_hosts)
        self.client = sender_client(
            settings.webhook_connect_timeout_seconds, settings.webhook_read_timeout_seconds
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()

    async def _claim(self) -> list[tuple[Holder, WebhookDelivery, WebhookEvent, WebhookSubscription]]:
        """Lease up to ``webhook_batch_size`` due deliveries, with their events and subscriptions."""
        async with self.sessions() as session, session.begin():
            leases = await claim_due(
                session,
                self.owner,
                self.settings.webhook_lease_seconds,
                utcnow(),
                limit=self.settings.webhook_batch_size,
            )
            if not leases:
                return []
            rows = {
                delivery.id: (delivery, event, subscription)
                for delivery, event, subscription in (
                    await session.execute(
                        select(WebhookDelivery, WebhookEvent, WebhookSubscription)
                        .join(WebhookEvent, WebhookEvent.seq == WebhookDelivery.event_seq)
                        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
                        .where(WebhookDelivery.id.in_([lease.key for lease in leases]))
                    )
                ).tuples()
            }
            return [(lease, *rows[lease.key]) for lease in leases]

    async def _send(self, event: WebhookEvent, subscription: WebhookSubscription) -> SendResult:
        try:
            destination = await check_destination(subscription.url, self.allowed, "url")
        except DestinationRefused:
            return SendResult(None, 0, "destination_refused")
        now = utcnow()
        body = msgspec.json.encode(event.payload)
        headers = {
            "webhook-id": event.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": sign(
                signing_secrets(self.settings, subscription, now), event.message_id, now, body
            ),
        }
        return await post_signed(
            self.client, destination, body, headers, self.settings.webhook_response_limit_bytes
        )

    def _outcome(self, delivery: WebhookDelivery, result: SendResult, now: datetime) -> dict[str, Any]:
        attempts = delivery.attempts + 1
        entry = {
            "at": now.isoformat(),
            "status_code": result.status_code,
            "latency_ms": result.latency_ms,
            "error": result.error,
        }
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": result.status_code,
            "last_latency_ms": result.latency_ms,
            "last_error": result.error,
            "history": [*delivery.history, entry][-HISTORY_KEPT:],
        }
        if result.accepted:
            return {**values, "status": "delivered", "delivered_at": now}
        wait = backoff_seconds(
            attempts, self.settings.webhook_backoff_base_seconds, self.settings.webhook_backoff_max_seconds
        )
        retry_at = now + timedelta(seconds=wait)
        window_end = delivery.window_started_at + timedelta(
            seconds=self.settings.webhook_retry_period_seconds
        )
        if retry_at > window_end:
            return {**values, "status": "dead"}
        return {**values, "next_attempt_at": retry_at}

    async def run_one(self) -> bool:
        """Send one batch of due deliveries (see :meth:`run_batch`); False when none was due."""
        return await self.run_batch() > 0

    async def run_batch(self) -> int:
        """Lease up to ``webhook_batch_size`` due deliveries in one transaction, post them
        concurrently, write their outcomes (each fenced by its own claim) in one transaction;
        returns how many were attempted."""
        claimed = await self._claim()
        if not claimed:
            return 0
        results = await asyncio.gather(
            *(self._send(event, subscription) for _, _, event, subscription in claimed)
        )
        now = utcnow()
        outcomes = [
            self._outcome(delivery, result, now)
            for (_, delivery, _, _), result in zip(claimed, results, strict=True)
        ]
        async with self.sessions() as session, session.begin():
            settled = [
                await settle(session, lease, values)
                for (lease, *_), values in zip(claimed, outcomes, strict=True)
            ]
        for (lease, *_), values, held in zip(claimed, outcomes, settled, strict=True):
            outcome = str(values.get("status", "retry")) if held else "lost"
            WEBHOOK_ATTEMPTS.labels(outcome=outcome).inc()
            if not held:
                logger.warning("delivery lease lost", delivery_id=str(lease.key))
            if outcome == "dead":
                logger.warning(
                    "webhook delivery dead", delivery_id=str(lease.key), attempts=values["attempts"]
                )
        return len(claimed)

    async def serve(self, stop: asyncio.Event) -> None:
        """:meth:`loop` until ``stop``, then close the HTTP client."""
        try:
            await self.loop(stop)
        finally:
            await self.close()

    async def loop(self, stop: asyncio.Event) -> None:
        """Send until ``stop``; idle, look again every ``webhook_poll_seconds``."""
        while not stop.is_set():
            try:
                busy = await self.run_one()
            except (SQLAlchemyError, OSError) as exc:
                logger.warning("webhook sender cannot reach the store", error_type=type(exc).__name__)
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.webhook_poll_seconds)


def start_webhook_work(loops: LoopWatch, settings: Settings, store_engine: AsyncEngine) -> None:
    """Start the delivery workers of this process (one on SQLite) and the periodic upkeep
    (deadline events, purge of old deliveries) on ``loops``.

    Senders are graceful: at shutdown each finishes the attempt it holds (its outcome is written),
    then closes its HTTP client.
    """
    count = 1 if settings.is_sqlite else max(settings.worker_concurrency, 1)
    for i in range(count):
        worker = DeliveryWorker(settings, store_engine, f"webhooks{i}")
        loops.start(f"webhook-sender-{i}", partial(worker.serve, loops.stopping), graceful=True)
    loops.every(
        "webhook-upkeep", settings.deadline_check_interval_seconds, partial(upkeep, settings, store_engine)
    )
