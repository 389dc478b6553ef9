"""The SMTP sink of the tests and of bench: aiosmtpd on 127.0.0.1 that accepts every
message, keeps it (tests wait for one) or only counts it (bench), and can answer slowly.

aiosmtpd is a development dependency: the web and the worker never import this."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from email import message_from_bytes
from email.message import Message

from aiosmtpd.controller import Controller

from devtools.processes import free_port


class Mailbox:
    """Messages received by the in-process SMTP server, with a way to wait for one.

    `delay` seconds are awaited on the server's event loop before each answer, so slow
    answers overlap: each SMTP client waits for its own message, as with a slow real
    server. With `keep=False` messages are only counted (bench sends thousands).
    """

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.delay = 0.0
        self._received = 0
        self._messages: list[Message] = []
        self._changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd hook
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        message = None
        if self.keep:
            message = message_from_bytes(envelope.original_content or envelope.content)
        with self._changed:
            self._received += 1
            if message is not None:
                self._messages.append(message)
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    @property
    def received(self) -> int:
        with self._changed:
            return self._received

    @property
    def messages(self) -> list[Message]:
        with self._changed:
            return list(self._messages)

    def clear(self) -> None:
        with self._changed:
            self._messages.clear()

    def sent_to(self, address: str) -> list[Message]:
        return [m for m in self.messages if address.lower() in m["To"].lower()]

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 20.0) -> Message:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for message in self._messages:
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching email within {timeout}s")
                self._changed.wait(remaining)


class SmtpServer:
    """A started aiosmtpd server on a free port of 127.0.0.1 (or on `port`, to bring a
    stopped one back), delivering to `mailbox`."""

    def __init__(self, mailbox: Mailbox | None = None, port: int | None = None) -> None:
        self.mailbox = mailbox or Mailbox()
        self.port = port or free_port()
        self._controller: Controller | None = Controller(
            self.mailbox, hostname="127.0.0.1", port=self.port
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
