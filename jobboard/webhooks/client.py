"""HTTP/1.1 for webhook attempts: h11's protocol state machine over asyncio streams, on
connections vetted by `targets`' rules.

One `EndpointConnections` per endpoint holds its kept-alive connections. An attempt
resolves the URL's host itself, refuses it when any address is not allowed (unless
WEBHOOK_ALLOW_PRIVATE_URLS), connects to the address (nothing resolves the name again),
checks the peer it got, and for https negotiates TLS with the URL's host name (SNI and
certificate check). It sends one POST, reads the status, the headers and at most
`body_limit` bytes of the body as received (no content decoding), and never follows a
redirect. A connection goes back to the endpoint's idle ones only when the exchange
ended cleanly and both sides may go on (h11's states); one whose body was left unread,
or that broke, is dropped.

Why not httpx here: webhook attempts use none of a general client (no redirects,
cookies, proxies, decoding), and on this path httpx + httpcore + anyio cost about four
times the CPU per request of h11 alone (0.5 ms against 0.12 ms measured here), which a
worker shared with the jobs' queue pays for every delivery. h11 is httpcore's own HTTP/1.1
implementation; the refusal rules are `targets`' (`resolve_async`, `vet`, `forbidden`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
import httpx

from jobboard.webhooks.targets import RefusedTarget, forbidden, resolve_async, vet

READ_SIZE = 65536
Origin = tuple[str, str, int]


class ExchangeError(Exception):
    """The attempt got no complete answer head; the message says what happened."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    body: bytes = b""
    cut_off: str | None = None  # why the body ended early, when it broke off


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    def reusable(self, now: float, keepalive: float) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.is_closing()
            and now - self.idle_since < keepalive
            and self.protocol.our_state is h11.IDLE
            and self.protocol.their_state is h11.IDLE
        )

    def abort(self) -> None:
        self.writer.transport.abort()


class EndpointConnections:
    """One endpoint's kept-alive connections (at most as many as its attempts in flight,
    which the caller limits)."""

    def __init__(self, ssl_context: ssl.SSLContext, allow_private: bool, keepalive: float) -> None:
        self.ssl_context = ssl_context
        self.allow_private = allow_private
        self.keepalive = keepalive
        self._idle: list[tuple[Origin, _Connection]] = []

    async def post(
        self,
        url: httpx.URL,
        headers: dict[str, str],
        body: bytes,
        body_limit: int,
        on_head: Callable[[Answer], None] = lambda answer: None,
    ) -> Answer:
        """POST `body` to `url`; the answer's status, headers and first `body_limit`
        bytes (`on_head` is told of the head as soon as it came). ExchangeError (or
        RefusedTarget) when no answer head came."""
        origin: Origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        connection = self._take_idle(origin)
        if connection is not None:
            try:
                return await self._exchange(
                    origin, connection, url, headers, body, body_limit, on_head
                )
            except _ClosedBeforeAnswer:
                pass  # closed by the receiver while idle: once more on a new connection
        connection = await self._connect(origin)
        try:
            return await self._exchange(origin, connection, url, headers, body, body_limit, on_head)
        except _ClosedBeforeAnswer as error:
            raise ExchangeError(str(error)) from None

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _origin, connection in idle:
            connection.abort()

    def _take_idle(self, origin: Origin) -> _Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            kept_origin, connection = self._idle.pop()
            if kept_origin == origin and connection.reusable(now, self.keepalive):
                return connection
            connection.abort()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        addresses = await resolve_async(host, port)
        if not self.allow_private:
            vet(host, addresses)
        tls = scheme == "https"
        last_error: Exception | None = None
        for address in addresses:
            try:
                reader, writer = await asyncio.open_connection(
                    str(address),
                    port,
                    ssl=self.ssl_context if tls else None,
                    server_hostname=host if tls else None,
                    limit=READ_SIZE,
                )
            except ssl.SSLError as error:
                raise ExchangeError(f"ConnectError: {error}") from None
            except OSError as error:
                last_error = error
                continue
            peer = writer.get_extra_info("peername")
            if not self.allow_private and (
                peer is None or forbidden(ipaddress.ip_address(peer[0].split("%")[0]))
            ):
                writer.transport.abort()
                raise RefusedTarget(f"Refused to talk to {peer}: not a public address.")
            return _Connection(reader, writer)
        raise ExchangeError(f"ConnectError: {last_error or f'no address of {host} answered'}")

    async def _exchange(
        self,
        origin: Origin,
        connection: _Connection,
        url: httpx.URL,
        headers: dict[str, str],
        body: bytes,
        body_limit: int,
        on_head: Callable[[Answer], None],
    ) -> Answer:
        try:
            answer, reusable = await self._round(
                connection, url, headers, body, body_limit, on_head
            )
        except BaseException:
            connection.abort()
            raise
        if reusable:
            connection.protocol.start_next_cycle()
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.append((origin, connection))
        else:
            connection.abort()
        return answer

    async def _round(
        self,
        connection: _Connection,
        url: httpx.URL,
        headers: dict[str, str],
        body: bytes,
        body_limit: int,
        on_head: Callable[[Answer], None],
    ) -> tuple[Answer, bool]:
        protocol = connection.protocol
        request_headers = [
            ("host", url.netloc.decode("ascii")),
            ("content-length", str(len(body))),
            *headers.items(),
        ]
        target = url.raw_path
        message = protocol.send(h11.Request(method="POST", target=target, headers=request_headers))
        message += protocol.send(h11.Data(data=body)) + protocol.send(h11.EndOfMessage())
        try:
            connection.writer.write(message)
            await connection.writer.drain()
        except OSError as error:
            raise _ClosedBeforeAnswer(f"WriteError: {error}") from None

        answer: Answer | None = None
        kept = bytearray()
        got_bytes = False
        while True:
            try:
                event = protocol.next_event()
            except h11.RemoteProtocolError as error:
                if answer is None:
                    raise ExchangeError(f"RemoteProtocolError: {error}") from None
                answer.cut_off = "RemoteProtocolError"
                break
            if event is h11.NEED_DATA:
                try:
                    data = await connection.reader.read(READ_SIZE)
                except OSError as error:
                    if answer is None:
                        raise _ClosedBeforeAnswer(f"ReadError: {error}") from None
                    answer.cut_off = "ReadError"
                    break
                if not data and not got_bytes:
                    raise _ClosedBeforeAnswer(
                        "RemoteProtocolError: Server disconnected without sending a response."
                    )
                got_bytes = True
                protocol.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                answer = Answer(
                    event.status_code,
                    {
                        name.decode("latin-1"): value.decode("latin-1")
                        for name, value in event.headers
                    },
                )
                on_head(answer)
                continue
            if isinstance(event, h11.Data):
                kept += event.data
                if len(kept) >= body_limit:
                    break  # the rest is never read: the connection is dropped
                continue
            if isinstance(event, h11.EndOfMessage):
                assert answer is not None
                answer.body = bytes(kept[:body_limit])
                return answer, protocol.our_state is h11.DONE and protocol.their_state is h11.DONE
            # ConnectionClosed (or PAUSED): nothing more comes on this connection.
            if answer is None:
                raise ExchangeError(
                    "RemoteProtocolError: Server disconnected without sending a response."
                )
            answer.cut_off = "RemoteProtocolError"
            break
        answer.body = bytes(kept[:body_limit])
        return answer, False


class _ClosedBeforeAnswer(Exception):
    """The connection ended before an answer head: on a kept-alive connection, most likely
    closed by the receiver while idle."""
