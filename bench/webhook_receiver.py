"""`python -m bench.webhook_receiver --port N`: the benchmark's webhook receivers, one
process on 127.0.0.1 serving many endpoints, each a path `/hooks/<name>`.

It is a receiver as a client would write one: every request is verified with the
reference `standardwebhooks` library (signature, `webhook-id`, timestamp) before it
counts, and answered 204; an endpoint in `hang` mode reads the request and never answers
(the worker's timeout ends it). It runs in a process of its own so that its work does
not share the benchmark's interpreter, and keeps HTTP/1.1 connections alive as the
worker's client expects.

The benchmark drives it over the same port:
* `PUT /control/endpoints/<name>` with `{"secret": "whsec_…", "mode": "ok"|"hang"}`
  declares an endpoint (again: replaces it and forgets what it received);
* `POST /control/release/<name>` closes the connections a `hang` endpoint holds;
* `GET /control/counts` and `GET /control/stats` answer, per endpoint, the requests
  that verified (`received`), the distinct `webhook-id`s among them, the requests that
  failed verification, the most requests it had in flight at once and the most
  connections open to it at once (the worker's client keeps them alive), and (`stats` only)
  `arrivals`: `[seq, time]` per verified request, where `seq` is the event's `data.seq`
  (null without one) and `time` the arrival (Unix seconds, `time.time()`, when the body
  was complete).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 1024 * 1024


@dataclass
class Endpoint:
    webhook: Webhook
    mode: str = "ok"
    received: int = 0
    failed: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    connections: int = 0
    max_connections: int = 0
    ids: set[str] = field(default_factory=set)
    arrivals: list[tuple[Any, float]] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def stats(self, arrivals: bool) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "received": self.received,
            "distinct_ids": len(self.ids),
            "failed_verification": self.failed,
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
            "max_connections": self.max_connections,
            **({"arrivals": self.arrivals} if arrivals else {}),
        }


class Receivers:
    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        holder: Endpoint | None = None  # the endpoint this connection brought requests to
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers: dict[str, str] = {}
                for line in header_lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                if length > MAX_BODY:
                    await self.answer(writer, 413, b"")
                    return
                body = await reader.readexactly(length) if length else b""
                if holder is None and path.startswith("/hooks/"):
                    holder = self.endpoints.get(path.removeprefix("/hooks/"))
                    if holder is not None:
                        holder.connections += 1
                        holder.max_connections = max(holder.max_connections, holder.connections)
                status, answer = await self.handle(method, path, headers, body, reader)
                if status == 0:  # hung until the client closed the connection
                    return
                await self.answer(writer, status, answer)
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            if holder is not None:
                holder.connections -= 1
            writer.close()

    @staticmethod
    async def answer(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: application/json\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def handle(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        reader: asyncio.StreamReader,
    ) -> tuple[int, bytes]:
        if path.startswith("/hooks/") and method == "POST":
            return await self.deliver(path.removeprefix("/hooks/"), headers, body, reader)
        if path.startswith("/control/endpoints/") and method == "PUT":
            declared = json.loads(body)
            name = path.removeprefix("/control/endpoints/")
            if name in self.endpoints:
                self.endpoints[name].released.set()
            self.endpoints[name] = Endpoint(Webhook(declared["secret"]), declared.get("mode", "ok"))
            return 204, b""
        if path.startswith("/control/release/") and method == "POST":
            endpoint = self.endpoints.get(path.removeprefix("/control/release/"))
            if endpoint is not None:
                endpoint.released.set()
            return 204, b""
        if path in ("/control/stats", "/control/counts") and method == "GET":
            arrivals = path == "/control/stats"
            stats = {name: endpoint.stats(arrivals) for name, endpoint in self.endpoints.items()}
            return 200, json.dumps(stats).encode()
        return 404, b""

    async def deliver(
        self, name: str, headers: dict[str, str], body: bytes, reader: asyncio.StreamReader
    ) -> tuple[int, bytes]:
        arrived = time.time()
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            return 404, b""
        try:
            payload = endpoint.webhook.verify(body, headers)
        except (WebhookVerificationError, ValueError):  # bad signature, or not JSON
            endpoint.failed += 1
            return 400, b""
        endpoint.received += 1
        endpoint.ids.add(headers["webhook-id"])
        data = payload.get("data") if isinstance(payload, dict) else None
        seq = data.get("seq") if isinstance(data, dict) else None
        endpoint.arrivals.append((seq, arrived))
        endpoint.in_flight += 1
        endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
        try:
            if endpoint.mode == "hang":
                # Until the client gives up and closes, or the benchmark releases it.
                reading = asyncio.ensure_future(reader.read())
                releasing = asyncio.ensure_future(endpoint.released.wait())
                await asyncio.wait((reading, releasing), return_when=asyncio.FIRST_COMPLETED)
                reading.cancel()
                releasing.cancel()
                return 0, b""
            return 204, b""
        finally:
            endpoint.in_flight -= 1


async def main(port: int) -> None:
    receivers = Receivers()
    server = await asyncio.start_server(receivers.serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_receiver")
    parser.add_argument("--port", type=int, required=True)
    try:
        asyncio.run(main(parser.parse_args().port))
    except KeyboardInterrupt:
        pass
