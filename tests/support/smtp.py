"""Mail as the tests read it. The SMTP sink itself is `devtools.smtp`, shared with bench."""

from __future__ import annotations

from email.message import Message


def body_of(message: Message) -> str:
    """The text/plain body of a message the sink kept."""
    if message.is_multipart():
        parts = [p for p in message.walk() if p.get_content_type() == "text/plain"]
        message = parts[0]
    payload = message.get_payload(decode=True)
    return payload.decode(message.get_content_charset() or "utf-8")
