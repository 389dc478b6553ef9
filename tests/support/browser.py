"""The browser tests' tools: the app served over real HTTP, and the system's Chromium
driven by Playwright (its own browser download is not used: `python3 run.py test`
installs Debian's chromium; see docs/development.md, "Tests")."""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Response, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

from config import PROJECT_ROOT
from tests.support.polling import wait_until

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_NAMES = ("chromium", "chromium-browser")


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


def chromium_path() -> str:
    """The system's Chromium. The tests never install it: `python3 run.py test` does (as
    root), so in CI a missing browser fails; elsewhere the browser tests are skipped."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    reason = (
        "the browser tests need Debian's `chromium` package: `python3 run.py test` installs "
        "it when run as root; otherwise install that package yourself (see "
        "docs/development.md, 'Tests')"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


# Flags for a browser that talks to nobody but the test server.
CHROMIUM_FLAGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
)


class Browser:
    """One headless Chromium and one page, driven by Playwright. Console and log events
    come from a DevTools session on the page, as Chromium reports them."""

    def __init__(self, executable: str, width: int = 1280, height: int = 900) -> None:
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=executable, headless=True, args=list(CHROMIUM_FLAGS)
            )
            self._context = self._browser.new_context(viewport={"width": width, "height": height})
            self.page = self._context.new_page()
        except BaseException:
            self._playwright.stop()
            raise
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.responses: list[Response] = []
        self.urls: list[str] = []
        self.page.on("request", lambda request: self.urls.append(request.url))
        self.page.on("response", lambda response: self.responses.append(response))
        self._devtools = self._context.new_cdp_session(self.page)
        for event in ("Runtime.exceptionThrown", "Runtime.consoleAPICalled", "Log.entryAdded"):
            self._devtools.on(
                event, lambda params, event=event: self.events.append((event, params))
            )
        for domain in ("Runtime", "Log"):
            self._devtools.send(f"{domain}.enable")

    def evaluate(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def open(self, url: str) -> None:
        """Load `url`; events (requests, console) are recorded afresh from here."""
        self.drain_events()
        self.events.clear()
        self.responses.clear()
        self.urls.clear()
        self.page.goto(url, wait_until="load")

    def state(self) -> str | None:
        return self.evaluate("document.body && document.body.dataset.state")

    def wait_for_state(self, *states: str, timeout: float = 20.0) -> str:
        return wait_until(lambda: self.state() in states and self.state(), timeout=timeout)

    def type_into(self, element_id: str, text: str) -> None:
        """Type into the field as a keyboard would (input events fire)."""
        self.page.locator(f"#{element_id}").fill(text)

    def click(self, element_id: str) -> None:
        """A real mouse click in the middle of the element."""
        self.page.locator(f"#{element_id}").click()

    def screenshot(self, name: str) -> Path:
        """A full-page PNG under test-artifacts/."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=path, full_page=True)
        return path

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        """Let events already sent by the browser arrive."""
        self.page.wait_for_timeout(200)
        return self.events

    def requested_urls(self) -> list[str]:
        self.drain_events()
        return list(self.urls)

    def javascript_errors(self) -> list[str]:
        errors = []
        for method, params in self.drain_events():
            if method == "Runtime.exceptionThrown":
                errors.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
                errors.append(json.dumps(params["args"])[:500])
        return errors

    def policy_violations(self) -> list[str]:
        """What Chromium blocked under the page's Content-Security-Policy."""
        return [
            params["entry"]["text"]
            for method, params in self.drain_events()
            if method == "Log.entryAdded"
            and "Content Security Policy" in params["entry"].get("text", "")
        ]

    def document_headers(self, url: str) -> dict[str, str]:
        """The response headers of the page itself at `url` (lower-case names)."""
        self.drain_events()
        for response in self.responses:
            if response.url == url:
                return response.headers
        raise AssertionError(f"no response recorded for {url}")

    def close(self) -> None:
        try:
            self._browser.close()
        finally:
            self._playwright.stop()
