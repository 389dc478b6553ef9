"""An event's email, rendered from the event alone: `jobboard/templates/email/<template>.txt`
and `.html` (the catalogue names the template), for the event's recipient.

Text somebody wrote (a job's name, a bid's comment, a delivery's note, a display name) is
marked as theirs in both parts and never becomes a link: `unlinked` breaks what a mail
client would take for an address or a URL with zero-width spaces, the HTML part escapes
it and shows it quoted, the text part quotes it with `> `.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from jinja2 import Template

from jobboard.events.catalogue import event_type
from jobboard.events.outbox import public_id
from jobboard.extensions import db
from jobboard.models import Event, User

# After these, a zero-width space: "evil.example" no longer reads as a host name, nor
# "https://" as a scheme, nor "a@b" as an address.
_LINKISH = re.compile(r"([.:@/\\])(?=\S)")
ZERO_WIDTH_SPACE = "\u200b"


@dataclass(frozen=True)
class EventEmail:
    to: str
    subject: str
    body: str
    html: str


def unlinked(value: object) -> str:
    """User-written text that no mail client turns into a link."""
    return _LINKISH.sub(lambda match: match.group(1) + ZERO_WIDTH_SPACE, str(value))


def quoted(value: object) -> str:
    """User-written text for the text part: unlinked, every line quoted with `> `."""
    return "\n".join(f"> {line}" for line in unlinked(value).splitlines() or [""])


def one_line(value: object) -> str:
    """For a subject: unlinked, on one line."""
    return " ".join(unlinked(value).split())


def register_email_filters(app: Flask) -> None:
    app.jinja_env.filters.update(unlinked=unlinked, quoted=quoted, one_line=one_line)


def event_email(event_id: int) -> EventEmail | None:
    """The email of event `event_id`, or None when it has none (its type sends no email,
    this event does not want one) or nobody to go to any more."""
    event = db.session.get(Event, event_id)
    if event is None:
        return None
    spec = event_type(event.type)
    if not spec.wants_email(event.data):
        return None
    recipient = db.session.get(User, event.user_id)
    if recipient is None:
        return None
    return render(spec.email or "", recipient, event)


def render(template_name: str, recipient: User, event: Event) -> EventEmail:
    context: dict[str, Any] = {
        **event.data,
        "recipient": recipient,
        "event": {"id": public_id(event.txid, event.id), "type": event.type},
    }
    environment = current_app.jinja_env
    text = environment.get_template(f"email/{template_name}.txt")
    html = environment.get_template(f"email/{template_name}.html")
    return EventEmail(
        to=recipient.email,
        subject=_block(text, "subject", context).strip(),
        body=text.render(context),
        html=html.render(context),
    )


def _block(template: Template, name: str, context: dict[str, Any]) -> str:
    return "".join(template.blocks[name](template.new_context(context)))
