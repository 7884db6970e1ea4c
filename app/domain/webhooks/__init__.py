"""Webhooks: subscriptions, the outbox, signed deliveries to checked destinations."""
