"""How every `flask` command of jobboard speaks, so that commands compose in a shell.

- Data goes to stdout: a table by default, or JSON with `--json` (one document; `jobs
  watch --json` writes one per round, a line each). A mutation prints what it did there.
- Progress and notes about the run go to stderr (`note`), where click's prompts and
  errors go too.
- A refusal is a click error, exit status non-zero: `click.ClickException` (1,
  "Error: ...") for what the service refused, `click.BadParameter` (2) naming the option
  when the refusal is about one (`refusals`).
- Libraries say only what went wrong: under `flask`, Procrastinate logs warnings only
  (`quiet_libraries`, called when the CLI creates the app).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import click

from jobboard.errors import DomainError
from jobboard.extensions import db

F = TypeVar("F", bound=Callable[..., Any])

# Loggers whose INFO lines are the library's business, not the operator's: Procrastinate
# announces its built-in tasks whenever an App is built, and each job it defers.
CHATTY_LIBRARIES = ("procrastinate",)


def quiet_libraries() -> None:
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def json_option(function: F) -> F:
    """`--json`: the command's data as JSON on stdout instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        function
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_jsonable, ensure_ascii=False))


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns separated by two spaces, a header line first; nothing after the rows."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(text) for text in column) for column in zip(headers, *cells, strict=True)]
    for line in (list(headers), *cells):
        click.echo(
            "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def emit(text: str) -> None:
    """A line of the command's output (what a mutation did, for instance)."""
    click.echo(text)


def note(text: str) -> None:
    """Progress or a remark about the run, on stderr: never part of the data."""
    click.echo(text, err=True)


@contextmanager
def refusals() -> Iterator[None]:
    """Turn a service's refusal (a `DomainError`) into a click error, the transaction
    rolled back. When the error names a field that is one of the command's parameters,
    the message names that option (`Invalid value for '--until': ...`)."""
    try:
        yield
    except DomainError as error:
        db.session.rollback()
        context = click.get_current_context(silent=True)
        if context is not None:
            by_name = {param.name: param for param in context.command.params}
            for field in error.errors or {}:
                if field in by_name:
                    raise click.BadParameter(
                        error.message, ctx=context, param=by_name[field]
                    ) from None
        raise click.ClickException(error.message) from None
