"""The web app's browser tests: one Chromium, a browser context per person (their own
cookies), each page's JavaScript errors and axe-core's findings collected."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser as PlaywrightBrowser
from playwright.sync_api import Page, sync_playwright

from tests.support.browser import ARTIFACTS, CHROMIUM_FLAGS

# axe-core's impacts that fail a page.
FAILING_IMPACTS = {"serious", "critical"}
_axe = Axe()


@dataclass
class Person:
    """One person: a browser context of their own, and its page."""

    name: str
    page: Page
    errors: list[str] = field(default_factory=list)

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.ready()

    def ready(self) -> None:
        """Wait until the page's script says it has drawn what it shows (the CSP forbids
        Playwright's string predicates: no eval)."""
        self.page.locator("body[data-state=ready]").wait_for(state="attached")

    def fill(self, selector: str, text: str) -> None:
        self.page.locator(selector).fill(text)

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=ARTIFACTS / name, full_page=True)

    def accessibility_problems(self) -> list[str]:
        """axe-core's serious and critical violations on the page as it is now."""
        response = _axe.run(self.page).response
        assert response["passes"], "axe-core checked nothing: did it run in the page?"
        violations = response["violations"]
        return [
            f"{self.page.url}: {violation['id']} ({violation['impact']}): "
            f"{[node['target'] for node in violation['nodes']][:3]}"
            for violation in violations
            if violation["impact"] in FAILING_IMPACTS
        ]


class WebBrowser:
    def __init__(self, executable: str) -> None:
        self._playwright = sync_playwright().start()
        try:
            self._browser: PlaywrightBrowser = self._playwright.chromium.launch(
                executable_path=executable, headless=True, args=list(CHROMIUM_FLAGS)
            )
        except BaseException:
            self._playwright.stop()
            raise
        self._contexts: list[Any] = []

    def person(
        self, name: str, width: int = 1100, height: int = 900, timezone: str | None = None
    ) -> Person:
        context = self._browser.new_context(
            viewport={"width": width, "height": height}, locale="en-US", timezone_id=timezone
        )
        context.set_default_timeout(15_000)
        self._contexts.append(context)
        page = context.new_page()
        person = Person(name, page)
        page.on("pageerror", lambda error: person.errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                message.type == "error"
                and "Failed to load resource" not in message.text
                and person.errors.append(message.text)
            ),
        )
        return person

    def close(self) -> None:
        try:
            for context in self._contexts:
                context.close()
            self._browser.close()
        finally:
            self._playwright.stop()
