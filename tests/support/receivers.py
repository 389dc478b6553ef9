"""Real webhook receivers on 127.0.0.1: raw-socket HTTP/1.1 servers in threads, each
answering every request as its `behaviour` says, including ways a receiver misbehaves
(hanging, redirecting, a 100 MB body, closing mid-answer). They record what they got:
every connection accepted and every request (headers, body, arrival time), so a test
can also prove that nothing was sent."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.polling import wait_until

HUGE_BODY_BYTES = 100 * 1024 * 1024


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the body was complete


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


# A behaviour gets the request and the receiver; it returns an Answer, or writes to the
# socket itself and returns None (then the connection is closed).
Behaviour = Callable[[Received, "Receiver", socket.socket], Answer | None]


def answer(status: int = 200, body: bytes = b"ok", **headers: str) -> Behaviour:
    return lambda request, receiver, connection: Answer(status, headers, body)


def hang(request: Received, receiver: Receiver, connection: socket.socket) -> None:
    """Never answer (until the receiver stops or the client gives up)."""
    receiver.stopping.wait()


def huge_body(request: Received, receiver: Receiver, connection: socket.socket) -> None:
    """200 with a 100 MB body, written until the client stops reading."""
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE_BODY_BYTES}\r\n\r\n".encode()
    chunk = b"x" * 65536
    try:
        connection.sendall(head)
        while receiver.bytes_sent < HUGE_BODY_BYTES:
            connection.sendall(chunk)
            receiver.bytes_sent += len(chunk)
    except OSError:
        pass


def close_mid_head(request: Received, receiver: Receiver, connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")


def close_mid_body(request: Received, receiver: Receiver, connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b")


class Receiver:
    """A receiver on 127.0.0.1, http or (with `tls`) https; stop() it after use."""

    def __init__(
        self, behaviour: Behaviour | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.behaviour = behaviour or answer()
        self.tls = tls
        self.received: list[Received] = []
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bytes_sent = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hooks"

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        try:
            if self.tls is not None:
                connection = self.tls.wrap_socket(connection, server_side=True)
            connection.settimeout(60)
            reader = connection.makefile("rb")
            while not self.stopping.is_set():
                request = self._read(reader)
                if request is None:
                    return
                with self._lock:
                    self.received.append(request)
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    reply = self.behaviour(request, self, connection)
                finally:
                    with self._lock:
                        self.in_flight -= 1
                if reply is None:
                    return
                head = [f"HTTP/1.1 {reply.status} X", f"Content-Length: {len(reply.body)}"]
                head += [
                    f"{name.replace('_', '-')}: {value}" for name, value in reply.headers.items()
                ]
                connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + reply.body)
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            try:
                connection.close()
            except OSError:
                pass

    @staticmethod
    def _read(reader: Any) -> Received | None:
        line = reader.readline(65536)
        if not line:
            return None
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            header = reader.readline(65536).decode("latin-1")
            if header in ("\r\n", "\n", ""):
                break
            name, _, value = header.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = reader.read(int(headers.get("content-length", "0")))
        return Received(method, path, headers, body, time.time())

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        wait_until(lambda: len(self.received) >= count, timeout=timeout)
        return self.received

    def stop(self) -> None:
        self.stopping.set()
        self._listener.close()
        self._thread.join(timeout=5)
