"""Webhook endpoints per user, and the delivery of their events (docs/webhooks.md)."""
