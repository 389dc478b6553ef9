"""The Flask application that tasks run their services in."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, has_app_context


@functools.cache
def flask_app() -> Flask:
    from jobboard import create_app

    return create_app()


@contextmanager
def app_context() -> Iterator[None]:
    """Run inside the caller's app context when there is one (tests, the Flask CLI), else
    inside the worker's own application."""
    if has_app_context():
        yield
        return
    with flask_app().app_context():
        yield
