"""Job processors: the registry that maps a job's `kind` to the function that runs it and the
marshmallow schema of its `params`, and the built-in kinds that need nothing but their params.

A leaf module: it imports nothing from `jobboard` (the import-linter contract in
pyproject.toml keeps it so). A kind that needs the application's services, such as
`report` (`jobboard/jobs/report.py`), comes in through the entry-point group below, which
jobboard's own pyproject.toml uses for it.

A processor is `function(params, run) -> output`: `params` are the job's params as its schema
loaded them, `run` describes the attempt (`JobRun`), and the return value (anything JSON can
hold) becomes the result's `output`. Raising an exception fails the attempt; the job is then
retried with backoff until its `max_attempts` are spent.

Every kind that the queue runs has a time limit (`Processor.time_limit`, seconds): an
attempt still running at its limit is asked to stop (`run.should_abort()` turns True) and
fails as past its limit, whatever it returns; the job's next attempt is then scheduled as
after any failure. Built-ins check `should_abort` at least twice a second or return within
milliseconds. A kind that declares no limit (every plugin that does not say) gets
DEFAULT_TIME_LIMIT_SECONDS. Kinds whose limit is over LONG_JOB_SECONDS are *long*: a worker
gives them at most LONG_JOB_SLOTS of its slots (docs/architecture.md, "Time limits and long jobs").
A blocking processor that ignores `should_abort` is failed LIMIT_GRACE_SECONDS after its
limit all the same and its worker slot goes to the next job; Python cannot stop a thread,
so the ignored one runs on, unattended, until it returns (its result is discarded, and
the worker logs an error naming the kind). A plugin must check `run.should_abort()`.

New kinds come from two places:
- `@processor("kind", schema=ParamsSchema)` on a function in any imported module;
- the `jobboard.processors` entry-point group of an installed distribution, e.g. in its
  pyproject.toml `[project.entry-points."jobboard.processors"] resize = "pkg.mod:resize"`.
  The entry point's object is either a function decorated with `@processor` (importing it
  registers it; `@processor("resize", time_limit=30)` declares its limit) or a plain
  `function(params, run)`, registered under the entry point's name, taking any JSON
  object as params, with the default time limit.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "jobboard.processors"

# A kind whose time limit is over this many seconds is long (see the module's docstring).
LONG_JOB_SECONDS = 10.0
# The time limit of a kind that declares none: long, so that an unknown plugin never takes
# the slots that short jobs are promised.
DEFAULT_TIME_LIMIT_SECONDS = 60.0
# How long past its limit the worker waits for an attempt that ignores `should_abort`.
LIMIT_GRACE_SECONDS = 2.0

ProcessorFunction = Callable[[dict[str, Any], "JobRun"], Any]


def _never_abort() -> bool:
    return False


@dataclass(frozen=True)
class JobRun:
    """What a processor may know about the attempt it runs."""

    job_id: int
    owner_id: int
    kind: str
    attempt: int
    max_attempts: int
    scheduled_time: datetime | None = None
    # True once the worker wants this attempt to stop (worker shutdown, abort request).
    should_abort: Callable[[], bool] = field(default=_never_abort, compare=False)


class AttemptInterrupted(Exception):
    """Raised by a processor that stops early because the worker asked it to."""


@dataclass(frozen=True)
class Processor:
    kind: str
    function: ProcessorFunction
    schema: Schema
    description: str = ""
    # False for a kind done by a person (`manual`): never deferred to the queue.
    runs_in_queue: bool = True
    # True (the default, and every plugin's unless it says otherwise) runs the processor
    # in a worker thread with a database session of its own; False runs it on the worker's
    # event loop, between two statements on the worker's own connection pool: only for
    # kinds that return at once, never sleep, and touch no database (echo, checksum, ...).
    blocking: bool = True
    # Seconds an attempt may run (see the module's docstring); None for a kind that the
    # queue never runs (`manual`).
    time_limit: float | None = DEFAULT_TIME_LIMIT_SECONDS

    @property
    def long(self) -> bool:
        """A long kind: its attempts take one of a worker's LONG_JOB_SLOTS."""
        return self.time_limit is not None and self.time_limit > LONG_JOB_SECONDS

    def load_params(self, params: Any) -> dict[str, Any]:
        """The params as the kind's schema loads them; raises ValidationError."""
        if not isinstance(params, dict):
            raise ValidationError({"_schema": ["Params must be a JSON object."]})
        return self.schema.load(params)

    def run(self, params: dict[str, Any], run: JobRun) -> Any:
        return self.function(params, run)


class AnyObjectParams(Schema):
    """Any JSON object, passed through unchanged."""

    class Meta:
        unknown = INCLUDE


_registry: dict[str, Processor] = {}
_registry_lock = threading.Lock()
_entry_points_loaded = False


def register(
    kind: str,
    function: ProcessorFunction,
    schema: Schema | type[Schema] | None = None,
    description: str | None = None,
    *,
    runs_in_queue: bool = True,
    blocking: bool = True,
    time_limit: float | None = None,
) -> Processor:
    """Add (or replace) the processor of `kind`; `time_limit` in seconds (None: the
    default, DEFAULT_TIME_LIMIT_SECONDS, for a kind that the queue runs)."""
    if not kind or len(kind) > 50:
        raise ValueError(f"A processor kind is 1-50 characters, not {kind!r}")
    if not runs_in_queue:
        time_limit = None
    elif time_limit is None:
        time_limit = DEFAULT_TIME_LIMIT_SECONDS
    elif not (math.isfinite(time_limit) and time_limit > 0):
        raise ValueError(f"The time limit of {kind!r} must be a number of seconds over 0")
    if schema is None:
        schema = AnyObjectParams
    schema_instance = schema() if isinstance(schema, type) else schema
    summary = description if description is not None else (function.__doc__ or "").strip()
    entry = Processor(
        kind,
        function,
        schema_instance,
        summary.splitlines()[0] if summary else "",
        runs_in_queue=runs_in_queue,
        blocking=blocking,
        time_limit=time_limit,
    )
    with _registry_lock:
        if kind in _registry and _registry[kind].function is not function:
            logger.warning("processor %r replaced by %s", kind, _qualified_name(function))
        _registry[kind] = entry
    return entry


def unregister(kind: str) -> None:
    with _registry_lock:
        _registry.pop(kind, None)


def processor(
    kind: str,
    *,
    schema: Schema | type[Schema] | None = None,
    description: str | None = None,
    blocking: bool = True,
    time_limit: float | None = None,
) -> Callable[[ProcessorFunction], ProcessorFunction]:
    """Register the decorated `function(params, run)` as the processor of `kind`
    (`blocking=False` only for one that returns at once; see `Processor.blocking`), with
    `time_limit` seconds per attempt (default DEFAULT_TIME_LIMIT_SECONDS)."""

    def decorator(function: ProcessorFunction) -> ProcessorFunction:
        registered = register(
            kind, function, schema, description, blocking=blocking, time_limit=time_limit
        )
        function.__processor__ = registered  # type: ignore[attr-defined]
        return function

    return decorator


def load_entry_points(force: bool = False) -> list[str]:
    """Import the `jobboard.processors` entry points (once, unless `force`); returns the
    kinds they added. A broken plugin is logged and skipped, never fatal."""
    global _entry_points_loaded
    if _entry_points_loaded and not force:
        return []
    _entry_points_loaded = True
    added = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
        except Exception:  # a third-party plugin must not take the service down
            logger.exception("cannot load processor entry point %s", entry_point.value)
            continue
        registered = getattr(loaded, "__processor__", None)
        if isinstance(loaded, Processor):
            registered = register(
                loaded.kind,
                loaded.function,
                loaded.schema,
                loaded.description,
                runs_in_queue=loaded.runs_in_queue,
                blocking=loaded.blocking,
                time_limit=loaded.time_limit,
            )
        elif registered is None and callable(loaded):
            registered = register(entry_point.name, loaded)
        elif registered is None:
            logger.error("processor entry point %s is not callable", entry_point.value)
            continue
        added.append(registered.kind)
    return added


def get_processor(kind: str) -> Processor | None:
    load_entry_points()
    return _registry.get(kind)


def processors() -> dict[str, Processor]:
    """Every registered kind, built-ins and plugins."""
    load_entry_points()
    with _registry_lock:
        return dict(_registry)


def kinds() -> list[str]:
    return sorted(processors())


def _qualified_name(function: Callable[..., Any]) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"


# --- built-in kinds ------------------------------------------------------------------------

MAX_TEXT_LENGTH = 1_000_000
MAX_SLEEP_SECONDS = 300
TOP_WORDS = 10
# How often a sleeping processor looks whether the worker wants it to stop.
ABORT_CHECK_SECONDS = 0.5


class StrictParams(Schema):
    class Meta:
        unknown = RAISE


class SleepParams(StrictParams):
    seconds = fields.Float(
        required=True,
        allow_nan=False,
        validate=validate.Range(min=0, max=MAX_SLEEP_SECONDS),
        metadata={"description": f"0-{MAX_SLEEP_SECONDS} seconds"},
    )


class TextParams(StrictParams):
    text = fields.String(required=True, validate=validate.Length(max=MAX_TEXT_LENGTH))


class ChecksumParams(TextParams):
    algorithm = fields.String(
        load_default="sha256", validate=validate.OneOf(["sha256", "sha1", "md5"])
    )


class FlakyParams(StrictParams):
    fail_times = fields.Integer(
        load_default=1,
        strict=True,
        validate=validate.Range(min=0, max=10),
        metadata={"description": "how many attempts fail before one succeeds (default 1)"},
    )


class NoParams(StrictParams):
    """No params: `{}`."""


@processor("echo", schema=AnyObjectParams, blocking=False, time_limit=5)
def echo(params: dict[str, Any], run: JobRun) -> dict[str, Any]:
    """Returns its params unchanged."""
    return params


@processor("sleep", schema=SleepParams, time_limit=MAX_SLEEP_SECONDS + 10)
def sleep(params: dict[str, Any], run: JobRun) -> dict[str, Any]:
    """Sleeps `seconds`, checking twice a second whether the worker wants it to stop."""
    seconds = params["seconds"]
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        if run.should_abort():
            raise AttemptInterrupted(f"stopped after {seconds - remaining:.1f} of {seconds} s")
        time.sleep(min(ABORT_CHECK_SECONDS, remaining))
    return {"slept": seconds}


# Words may contain inner apostrophes (ASCII or typographic) and hyphens: "don't", "e-mail".
WORD = re.compile(r"\w+(?:['\u2019-]\w+)*")


@processor("wordcount", schema=TextParams, time_limit=10)
def wordcount(params: dict[str, Any], run: JobRun) -> dict[str, Any]:
    """Counts words (case-insensitive, punctuation ignored), lines and characters."""
    text = params["text"]
    words = WORD.findall(text.lower())
    # most_common keeps first-seen order among equal counts, so ties are stable.
    top = Counter(words).most_common(TOP_WORDS)
    return {
        "words": len(words),
        "lines": len(text.splitlines()),
        "characters": len(text),
        "top_words": [[word, count] for word, count in top],
    }


@processor("checksum", schema=ChecksumParams, blocking=False, time_limit=10)
def checksum(params: dict[str, Any], run: JobRun) -> dict[str, Any]:
    """Hex digest of the UTF-8 text with sha256 (default), sha1 or md5."""
    algorithm = params["algorithm"]
    digest = hashlib.new(algorithm, params["text"].encode(), usedforsecurity=False)
    return {"algorithm": algorithm, "hexdigest": digest.hexdigest()}


class FlakyFailure(Exception):
    """The planned failure of a `flaky` job."""


@processor("flaky", schema=FlakyParams, blocking=False, time_limit=5)
def flaky(params: dict[str, Any], run: JobRun) -> dict[str, Any]:
    """Fails its first `fail_times` attempts, then succeeds: for trying retries."""
    if run.attempt <= params["fail_times"]:
        raise FlakyFailure(f"planned failure of attempt {run.attempt} of {params['fail_times']}")
    return {"attempts": run.attempt}


class PersonDoesIt(Exception):
    """Raised if a `manual` job ever reached a worker: the queue never runs one."""


def manual(params: dict[str, Any], run: JobRun) -> Any:
    """Done by a person: waits for an accepted bid; the assignee's delivery is the output."""
    raise PersonDoesIt("a manual job is done by its assignee, never by the queue")


register("manual", manual, AnyObjectParams, runs_in_queue=False)
