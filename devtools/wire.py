"""Database round trips counted on the wire: a loopback proxy in front of PostgreSQL.

pg_stat_statements would count statements on the server, but it must be in the server's
`shared_preload_libraries`, which a benchmark cannot set on a server it shares (and the
machine's server here does not load it). So the benchmark counts what clients send:
processes pointed at `WireCounter.url` talk to PostgreSQL through this proxy, which reads
the frontend messages of the PostgreSQL protocol (v3) and counts

* round trips: simple `Query` ('Q') messages plus extended-protocol `Sync` ('S')
  messages — each is one request the client then waits on (psycopg sends one of them
  per statement, `BEGIN`/`COMMIT`/`ROLLBACK` and pool checks included, outside pipeline
  mode, which neither Procrastinate nor SQLAlchemy use);
* statements: `Query` plus `Execute` ('E') messages; `statement_texts()` tells them
  apart by their SQL (from `Query`, or from the `Parse` that prepared what an `Execute`
  runs), so that a reader can see what was counted.

The proxy runs Python in the benchmark's process, so it slows what it measures: it is
used in a counting pass of its own, never while a rate is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from dataclasses import dataclass
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

from config import libpq_url

STARTUP_HEADER = 8  # Int32 length, Int32 protocol version or request code


@dataclass(frozen=True)
class WireCounts:
    round_trips: int
    statements: int
    connections: int

    def __sub__(self, other: WireCounts) -> WireCounts:
        return WireCounts(
            self.round_trips - other.round_trips,
            self.statements - other.statements,
            self.connections - other.connections,
        )


def fold(sql: bytes) -> str:
    return " ".join(sql.decode(errors="replace").split())[:160]


class WireCounter:
    """A TCP proxy on 127.0.0.1 to the server of `database_url`, counting messages."""

    def __init__(self, database_url: str) -> None:
        params = conninfo_to_dict(libpq_url(database_url))
        self._params = params
        host = params.get("host") or "/var/run/postgresql"
        port = int(params.get("port") or 5432)
        self._upstream: tuple[str, int] | str = (
            f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
        )
        self._messages: Counter[bytes] = Counter()
        self._texts: Counter[str] = Counter()
        self._connections = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The same database as `database_url`, through the proxy (no TLS, so that the
        messages can be read)."""
        user = quote(self._params.get("user") or "postgres", safe="")
        password = self._params.get("password")
        credentials = f"{user}:{quote(password, safe='')}" if password else user
        dbname = quote(self._params.get("dbname") or "postgres", safe="")
        return (
            f"postgresql://{credentials}@127.0.0.1:{self.port}/{dbname}"
            "?sslmode=disable&gssencmode=disable"
        )

    def start(self) -> WireCounter:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        )
        self._server = future.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def counts(self) -> WireCounts:
        with self._lock:
            messages = self._messages
            return WireCounts(
                round_trips=messages[b"Q"] + messages[b"S"],
                statements=messages[b"Q"] + messages[b"E"],
                connections=self._connections,
            )

    def statement_texts(self) -> Counter[str]:
        """Statements executed so far, by their SQL (whitespace folded, 160 characters)."""
        with self._lock:
            return Counter(self._texts)

    async def _serve(self, client_reader, client_writer) -> None:
        with self._lock:
            self._connections += 1
        try:
            if isinstance(self._upstream, str):
                server_reader, server_writer = await asyncio.open_unix_connection(self._upstream)
            else:
                server_reader, server_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_writer.close()
            return
        upstream = asyncio.ensure_future(self._relay(server_reader, client_writer))
        try:
            await self._count_frontend(client_reader, server_writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            server_writer.close()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await upstream
            client_writer.close()

    async def _count_frontend(self, reader, writer) -> None:
        """Forward the client's messages, counting them by type."""
        header = await reader.readexactly(STARTUP_HEADER)
        length = int.from_bytes(header[:4], "big")
        writer.write(header + await reader.readexactly(length - STARTUP_HEADER))
        prepared: dict[bytes, str] = {}  # statement name -> SQL, for this connection
        bound = ""
        while True:
            head = await reader.readexactly(5)
            body = await reader.readexactly(int.from_bytes(head[1:], "big") - 4)
            kind = head[:1]
            text = None
            if kind == b"P":  # Parse: statement name, SQL, ...
                name, sql, _rest = body.split(b"\0", 2)
                prepared[name] = fold(sql)
            elif kind == b"B":  # Bind: portal name, statement name, ...
                bound = prepared.get(body.split(b"\0", 2)[1], "?")
            elif kind == b"E":
                text = bound
            elif kind == b"Q":
                text = fold(body.rstrip(b"\0"))
            with self._lock:
                self._messages[kind] += 1
                if text is not None:
                    self._texts[text] += 1
            writer.write(head + body)
            await writer.drain()

    @staticmethod
    async def _relay(reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
