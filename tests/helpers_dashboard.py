"""Helpers for the dashboard, CLI and browser tests: rows in a given state, a real HTTP
server around an app, and headless Chromium driven over the DevTools protocol."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import threading
import urllib.request
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websocket
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from config import PROJECT_ROOT
from jobboard.extensions import db
from jobboard.models import Bid, BidStatus, Job, JobStatus, User, now_utc
from tests.conftest import wait_until

ARTIFACTS = PROJECT_ROOT / "test-artifacts"


# --- rows ----------------------------------------------------------------------------------


def make_job(owner: User | int, status: str = JobStatus.PENDING, **fields: Any) -> Job:
    """A job row in `status`, committed (a savepoint under the `app` fixture)."""
    now = now_utc()
    values: dict[str, Any] = {
        "owner_id": owner if isinstance(owner, int) else owner.id,
        "name": f"{status} job",
        "kind": "echo",
        "params": {"n": 1},
        "scheduled_time": now + timedelta(hours=1),
        "status": str(status),
    }
    if status in (JobStatus.COMPLETED, JobStatus.FAILED):
        values.update(attempts=1, started_at=now, finished_at=now)
    values.update(fields)
    job = Job(**values)
    db.session.add(job)
    db.session.commit()
    return job


def make_bid(job: Job, bidder: User | int, status: str = BidStatus.PENDING, **fields: Any) -> Bid:
    bidder_id = bidder if isinstance(bidder, int) else bidder.id
    values: dict[str, Any] = {
        "job_id": job.id,
        "bidder_id": bidder_id,
        "proposed_deadline": date.today() + timedelta(days=7),
        "fee": Decimal("80.00"),
        "status": str(status),
    }
    values.update(fields)
    bid = Bid(**values)
    db.session.add(bid)
    if status == BidStatus.ACCEPTED:
        job.assignee_id = bidder_id
    db.session.commit()
    return bid


def zero_jobs() -> dict[str, int]:
    return {**{status.value: 0 for status in JobStatus}, "total": 0}


def zero_bids() -> dict[str, int]:
    return {status.value: 0 for status in BidStatus}


# --- a real HTTP server ------------------------------------------------------------------


@dataclass
class LiveServer:
    """The app served by werkzeug on 127.0.0.1, in a thread of the test process."""

    app: Flask
    server: BaseWSGIServer = field(init=False)
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        # Port 0: the kernel picks a free port, with no race against other processes.
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# --- Chromium -------------------------------------------------------------------------------

CHROMIUM_INSTALL_LOCK = Path("/tmp/jobboard-chromium-install.lock")


def chromium_path() -> str:
    """Debian's chromium, installed with apt when missing and we are root; else skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip(
            "the browser test needs Debian's chromium (/usr/bin/chromium); install it with "
            "`sudo apt-get install -y chromium` (the tests install it only when run as root)"
        )
    # Parallel test runs must not start two apt-get at once.
    with CHROMIUM_INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which("chromium")
        if found:
            return found
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "-o", "DPkg::Lock::Timeout=300", "update"],
            ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "chromium"],
        ):
            done = subprocess.run(command, env=environment, capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(
                    f"could not install chromium ({' '.join(command)}): {done.stderr[-500:]}"
                )
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get installed chromium but no `chromium` is on PATH")
    return found


# Flags for a browser that talks to nobody but the test server.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class Browser:
    """One headless Chromium and one page, driven over the DevTools protocol."""

    def __init__(self, executable: str, profile_dir: Path, width: int = 1280, height: int = 900):
        self.profile_dir = profile_dir
        self.width = width
        self.height = height
        self.log_path = profile_dir.parent / "chromium.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile_dir}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        port = wait_until(self._devtools_port, timeout=60)
        # No proxy for 127.0.0.1, whatever the environment says.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        page = next(target for target in targets if target["type"] == "page")
        self.socket = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True
        )
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable")
        self._set_viewport(height)

    def _set_viewport(self, height: int) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _devtools_port(self) -> int | None:
        if self.process.poll() is not None:
            raise RuntimeError(f"chromium exited early, see {self.log_path}")
        active = self.profile_dir / "DevToolsActivePort"
        if not active.exists():
            return None
        lines = active.read_text().splitlines()
        return int(lines[0]) if lines and lines[0].strip() else None

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message_id = self._next_id
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        """Load `url`; events (requests, console) are recorded afresh from here."""
        self.drain_events()
        self.events.clear()
        self._set_viewport(self.height)
        self.send("Page.navigate", url=url)
        wait_until(lambda: self.evaluate("document.readyState") == "complete", timeout=20)

    def state(self) -> str | None:
        return self.evaluate("document.body && document.body.dataset.state")

    def wait_for_state(self, *states: str, timeout: float = 20.0) -> str:
        return wait_until(lambda: self.state() in states and self.state(), timeout=timeout)

    def type_into(self, element_id: str, text: str) -> None:
        """Focus the field and type as a keyboard would (input events fire)."""
        self.evaluate(f"document.getElementById({json.dumps(element_id)}).value = ''")
        self.evaluate(f"document.getElementById({json.dumps(element_id)}).focus()")
        self.send("Input.insertText", text=text)

    def click(self, element_id: str) -> None:
        """A real mouse click in the middle of the element."""
        box = self.evaluate(
            f"(() => {{ const r = document.getElementById({json.dumps(element_id)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for event in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                type=event,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )

    def screenshot(self, name: str) -> Path:
        """A full-page PNG under test-artifacts/."""
        self._set_viewport(int(self.evaluate("document.documentElement.scrollHeight")))
        # Let the resized layout paint before capturing it.
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def drain_events(self) -> list[dict[str, Any]]:
        """Pending protocol events, read without blocking for long."""
        self.socket.settimeout(0.2)
        try:
            while True:
                self.events.append(json.loads(self.socket.recv()))
        except websocket.WebSocketTimeoutException:
            pass
        finally:
            self.socket.settimeout(30)
        return self.events

    def requested_urls(self) -> list[str]:
        return [
            event["params"]["request"]["url"]
            for event in self.drain_events()
            if event.get("method") == "Network.requestWillBeSent"
        ]

    def javascript_errors(self) -> list[str]:
        errors = []
        for event in self.drain_events():
            method = event.get("method")
            if method == "Runtime.exceptionThrown":
                errors.append(json.dumps(event["params"]["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and event["params"]["type"] == "error":
                errors.append(json.dumps(event["params"]["args"])[:500])
        return errors

    def policy_violations(self) -> list[str]:
        """What Chromium blocked under the page's Content-Security-Policy."""
        return [
            event["params"]["entry"]["text"]
            for event in self.drain_events()
            if event.get("method") == "Log.entryAdded"
            and "Content Security Policy" in event["params"]["entry"].get("text", "")
        ]

    def document_headers(self, url: str) -> dict[str, str]:
        """The response headers of the page itself at `url` (lower-case names)."""
        for event in self.drain_events():
            if event.get("method") == "Network.responseReceived":
                response = event["params"]["response"]
                if response["url"] == url:
                    return {name.lower(): value for name, value in response["headers"].items()}
        raise AssertionError(f"no response recorded for {url}")

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self._log.close()
