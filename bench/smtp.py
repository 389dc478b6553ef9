"""A local SMTP sink whose answer to each message can be slowed down."""

from __future__ import annotations

import asyncio
import socket
import threading

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpSink:
    """aiosmtpd on 127.0.0.1 that accepts every message after `delay` seconds.

    The delay is awaited on the server's event loop, so slow answers overlap: each SMTP
    client (a worker's mail task) waits `delay` seconds for its own message, as with a
    slow real server.
    """

    def __init__(self) -> None:
        self.delay = 0.0
        self.port = 0
        self._received = 0
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd hook
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        with self._lock:
            self._received += 1
        return "250 Message accepted for delivery"

    @property
    def received(self) -> int:
        with self._lock:
            return self._received

    def start(self) -> SmtpSink:
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
