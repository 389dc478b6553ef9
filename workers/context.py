"""The Flask application that tasks run their services in."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, has_app_context

_app: Flask | None = None
_app_lock = threading.Lock()


def flask_app() -> Flask:
    """The worker's application, built once. Sync tasks run in threads, and two of them
    building it at once would register the blueprints twice on the shared Api."""
    global _app
    with _app_lock:
        if _app is None:
            from jobboard import create_app

            _app = create_app()
        return _app


@contextmanager
def app_context() -> Iterator[None]:
    """Run inside the caller's app context when there is one (tests, the Flask CLI), else
    inside the worker's own application."""
    if has_app_context():
        yield
        return
    with flask_app().app_context():
        yield
