"""Configuration, read from the environment only (a `.env` file is honoured for local runs).

`APP_ENV` picks the class: `production` (the default, what a Procfile deployment gets),
`development` (what `python3 run.py` writes into `.env`) or `testing`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent
load_dotenv(PROJECT_ROOT / ".env", override=False)

DEV_SECRET_KEY = "dev-secret-key-not-for-production"
DEV_JWT_SECRET_KEY = "dev-jwt-secret-key-not-for-production"
MIN_SECRET_LENGTH = 32


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def sqlalchemy_url(url: str) -> str:
    """Normalise Heroku-style `postgres://` and plain `postgresql://` URLs to psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_url(url: str) -> str:
    """The same database as a libpq conninfo URL, as psycopg and Procrastinate want it."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def statement_timeout_option(seconds: float) -> str | None:
    """libpq's `options` that make PostgreSQL cancel a statement after `seconds`."""
    milliseconds = round(seconds * 1000)
    return f"-c statement_timeout={milliseconds}" if milliseconds > 0 else None


def queue_conninfo(url: str, config: type[Config]) -> str:
    """The libpq URL of the worker's queue connections: the database's, with the connect
    and statement timeouts of `config`."""
    parts = urlsplit(libpq_url(url))
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.append(("connect_timeout", str(config.DATABASE_CONNECT_TIMEOUT)))
    option = statement_timeout_option(config.DATABASE_STATEMENT_TIMEOUT)
    if option:
        options = dict(query).get("options", "")
        query = [(key, value) for key, value in query if key != "options"]
        query.append(("options", f"{options} {option}".strip()))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


class Config:
    APP_ENV = "production"
    SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
    JWT_SECRET_KEY = os.environ.get("JWT_SECRET_KEY", DEV_JWT_SECRET_KEY)
    DATABASE_URL = os.environ.get("DATABASE_URL")

    # A database that does not answer is an outage, answered 503 within seconds (docs/
    # security.md, "The HTTP edge"), never a hang: connecting gives up after
    # DATABASE_CONNECT_TIMEOUT seconds (every connection: web, worker, CLI); PostgreSQL
    # cancels a statement run for a request, or by the worker's queue, after
    # DATABASE_STATEMENT_TIMEOUT seconds (0: never; migrations, the CLI and the tasks'
    # own statements are not bounded); a request waits at most DATABASE_POOL_TIMEOUT
    # seconds for a pooled connection.
    DATABASE_CONNECT_TIMEOUT = env_int("DATABASE_CONNECT_TIMEOUT", 3)
    DATABASE_STATEMENT_TIMEOUT = env_float("DATABASE_STATEMENT_TIMEOUT", 5.0)
    DATABASE_POOL_TIMEOUT = env_float("DATABASE_POOL_TIMEOUT", 5.0)

    # No pre-ping (a `;` round trip before every request's first statement): a pooled
    # connection that died with the database fails its request with 503 (errors.py), and
    # SQLAlchemy then invalidates the whole pool, so the next request connects afresh.
    SQLALCHEMY_ENGINE_OPTIONS = {
        "pool_pre_ping": False,
        "pool_timeout": DATABASE_POOL_TIMEOUT,
        "connect_args": {"connect_timeout": DATABASE_CONNECT_TIMEOUT},
    }

    JWT_ACCESS_TOKEN_EXPIRES = timedelta(minutes=int(os.environ.get("JWT_ACCESS_MINUTES", "15")))
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(days=int(os.environ.get("JWT_REFRESH_DAYS", "30")))
    # API clients send `Authorization: Bearer`; the web app's pages sign in with cookies
    # that page script cannot read (HttpOnly, SameSite=Lax, Secure here in production),
    # each change carrying the readable CSRF cookie's value in X-CSRF-TOKEN (double
    # submit). A request with a bearer header is judged by the header alone.
    JWT_TOKEN_LOCATION = ["headers", "cookies"]
    JWT_COOKIE_SECURE = True
    JWT_COOKIE_SAMESITE = "Lax"
    JWT_COOKIE_CSRF_PROTECT = True
    # The refresh cookie goes only to the session endpoints (refresh and sign out).
    JWT_REFRESH_COOKIE_PATH = "/api/session/"
    JWT_ERROR_MESSAGE_KEY = "message"

    MAIL_SERVER = os.environ.get("MAIL_SERVER") or None
    MAIL_PORT = int(os.environ.get("MAIL_PORT", "25"))
    MAIL_USE_TLS = env_bool("MAIL_USE_TLS")
    MAIL_USE_SSL = env_bool("MAIL_USE_SSL")
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME") or None
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD") or None
    MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "jobboard <no-reply@localhost>")
    MAIL_SUPPRESS_SEND = False

    PASSWORD_HASH_METHOD = "scrypt"
    MAIL_TIMEOUT = env_float("MAIL_TIMEOUT", 30.0)

    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
    # `text` (readable) or `json` (one object a line) for the web and the worker.
    LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")
    # The embedded PostgreSQL's data folder, used when DATABASE_URL is unset.
    JOBBOARD_PGDATA = os.environ.get("JOBBOARD_PGDATA") or str(PROJECT_ROOT / ".data" / "postgres")

    # The worker process (`python -m workers`; docs/configuration.md).
    WORKER_CONCURRENCY = env_int("WORKER_CONCURRENCY", 8)
    # Of those, how many long jobs (kinds whose time limit is over 10 s) may hold at once:
    # half, rounded down, at least 1 (README, "Time limits and long jobs").
    LONG_JOB_SLOTS = env_int("LONG_JOB_SLOTS", max(1, WORKER_CONCURRENCY // 2))
    MAIL_WORKER_CONCURRENCY = env_int("MAIL_WORKER_CONCURRENCY", 2)
    WORKER_POLL_INTERVAL = env_float("WORKER_POLL_INTERVAL", 0.1)
    # The jobs queue's batched worker (docs/performance.md): entries taken per statement
    # (at most the free slots; 0: Procrastinate's own worker, one entry at a time), and
    # how long finished attempts wait to be written together.
    QUEUE_BATCH_SIZE = env_int("QUEUE_BATCH_SIZE", 50)
    QUEUE_FLUSH_SECONDS = env_float("QUEUE_FLUSH_SECONDS", 0.05)
    # The batched worker's slots, all kinds: attempts of kinds that run on its event loop
    # (echo) take these; blocking kinds take at most WORKER_CONCURRENCY of them.
    WORKER_ASYNC_CONCURRENCY = env_int("WORKER_ASYNC_CONCURRENCY", 100)
    WORKER_HEARTBEAT_INTERVAL = env_float("WORKER_HEARTBEAT_INTERVAL", 10.0)
    # Worker processes started by one `python -m workers` (each with the settings above).
    WORKER_PROCESSES = env_int("WORKER_PROCESSES", 1)
    # Procrastinate's own log level in the worker: its per-job lines cost ~10 % of the
    # worker's time at INFO.
    QUEUE_LOG_LEVEL = os.environ.get("QUEUE_LOG_LEVEL", "WARNING")

    # Jobs and the queue.
    JOB_RETRY_BASE_SECONDS = env_float("JOB_RETRY_BASE_SECONDS", 2.0)
    QUEUE_RETENTION_HOURS = int(os.environ.get("QUEUE_RETENTION_HOURS", "24"))
    STALLED_WORKER_SECONDS = env_float("STALLED_WORKER_SECONDS", 30.0)

    # GET /metrics (docs/operations.md, "Metrics"): answered only with this bearer token;
    # unset, the path does not exist (404).
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None
    # Finished attempts enter the metrics' totals this many seconds after they finish: the
    # time a finishing transaction may take to commit (and the clocks to disagree).
    METRICS_SETTLE_SECONDS = env_float("METRICS_SETTLE_SECONDS", 10.0)
    # A delivery's output, as compact JSON, is refused above this size (422).
    MAX_DELIVERY_OUTPUT_BYTES = int(os.environ.get("MAX_DELIVERY_OUTPUT_BYTES", str(256 * 1024)))

    # Fractions of a minute are allowed (tests shorten a code's life to seconds).
    OTP_TTL = timedelta(minutes=env_float("OTP_TTL_MINUTES", 10))
    OTP_MAX_TRIES = env_int("OTP_MAX_TRIES", 5)
    # Between two codes of one purpose (verification, password reset) for one address.
    OTP_RESEND_COOLDOWN = timedelta(seconds=env_int("OTP_RESEND_COOLDOWN_SECONDS", 60))
    UNVERIFIED_ACCOUNT_DAYS = env_int("UNVERIFIED_ACCOUNT_DAYS", 7)

    # Rate limits (jobboard/ratelimit.py): at most N events per sliding window of S seconds.
    LOGIN_FAILURES_PER_EMAIL_IP = env_int("LOGIN_FAILURES_PER_EMAIL_IP", 10)
    LOGIN_FAILURES_PER_EMAIL_IP_WINDOW = env_int("LOGIN_FAILURES_PER_EMAIL_IP_WINDOW", 900)
    LOGIN_FAILURES_PER_IP = env_int("LOGIN_FAILURES_PER_IP", 100)
    LOGIN_FAILURES_PER_IP_WINDOW = env_int("LOGIN_FAILURES_PER_IP_WINDOW", 3600)
    CODES_SENT_PER_IP = env_int("CODES_SENT_PER_IP", 20)
    CODES_SENT_PER_IP_WINDOW = env_int("CODES_SENT_PER_IP_WINDOW", 3600)
    CODES_SENT_PER_ADDRESS_IP = env_int("CODES_SENT_PER_ADDRESS_IP", 5)
    CODES_SENT_PER_ADDRESS_IP_WINDOW = env_int("CODES_SENT_PER_ADDRESS_IP_WINDOW", 3600)
    CODES_SENT_PER_ADDRESS = env_int("CODES_SENT_PER_ADDRESS", 30)
    CODES_SENT_PER_ADDRESS_WINDOW = env_int("CODES_SENT_PER_ADDRESS_WINDOW", 3600)
    CODE_CHECK_FAILURES_PER_IP = env_int("CODE_CHECK_FAILURES_PER_IP", 30)
    CODE_CHECK_FAILURES_PER_IP_WINDOW = env_int("CODE_CHECK_FAILURES_PER_IP_WINDOW", 3600)
    CODE_CHECK_FAILURES_PER_ADDRESS_IP = env_int("CODE_CHECK_FAILURES_PER_ADDRESS_IP", 10)
    CODE_CHECK_FAILURES_PER_ADDRESS_IP_WINDOW = env_int(
        "CODE_CHECK_FAILURES_PER_ADDRESS_IP_WINDOW", 3600
    )
    # With 10**6 possible codes, n checks an hour find one with a chance of at most
    # n / (10**6 - n): keep it under 100 for "below 1 in 10,000" (jobboard/ratelimit.py).
    CODE_CHECK_FAILURES_PER_ADDRESS = env_int("CODE_CHECK_FAILURES_PER_ADDRESS", 60)
    CODE_CHECK_FAILURES_PER_ADDRESS_WINDOW = env_int("CODE_CHECK_FAILURES_PER_ADDRESS_WINDOW", 3600)
    # A job's owner is mailed about a bidder's first bid on it within this many seconds;
    # later ones are not mailed (jobboard/notices.py).
    BID_NOTICE_WINDOW = env_int("BID_NOTICE_WINDOW", 3600)
    # Malformed request bodies (400, 413, 422) from callers without an account; past the
    # limit, that IP's unauthenticated bodies are refused with 429 before being read.
    INVALID_REQUESTS_PER_IP = env_int("INVALID_REQUESTS_PER_IP", 100)
    INVALID_REQUESTS_PER_IP_WINDOW = env_int("INVALID_REQUESTS_PER_IP_WINDOW", 600)
    # Proxies in front of the app that append to X-Forwarded-For (Heroku: 1). 0 trusts none:
    # the client IP is the socket's peer.
    TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0)

    # Events and webhooks (docs/events.md, docs/webhooks.md).
    EVENT_RETENTION_DAYS = env_int("EVENT_RETENTION_DAYS", 30)
    WEBHOOK_WORKER_CONCURRENCY = env_int("WEBHOOK_WORKER_CONCURRENCY", 8)
    WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 15.0)
    # Seconds to wait after each failed attempt; one attempt more than there are waits.
    WEBHOOK_RETRY_SCHEDULE = os.environ.get(
        "WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000"
    )
    WEBHOOK_DISABLE_AFTER_SECONDS = env_int("WEBHOOK_DISABLE_AFTER_SECONDS", 432_000)
    # 1 lifts the https and public-address rules (receivers on this machine or network).
    WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS")
    # A PEM bundle of extra certificate authorities the worker trusts for https receivers.
    WEBHOOK_CA_BUNDLE = os.environ.get("WEBHOOK_CA_BUNDLE") or None

    # Plans and quotas (docs/api.md, "Plans and quotas").
    OPEN_JOBS_RETRY_AFTER_SECONDS = env_int("OPEN_JOBS_RETRY_AFTER_SECONDS", 30)
    PLAN_REMINDER_DAYS = env_int("PLAN_REMINDER_DAYS", 3)

    API_TITLE = "jobboard"
    API_VERSION = "1.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "/docs"
    # Served by the app itself from the swagger-ui-bundle package: /api/docs works offline.
    OPENAPI_SWAGGER_UI_URL = "/api/docs/assets/"
    # No validator badge: it would call validator.swagger.io.
    OPENAPI_SWAGGER_UI_CONFIG = {"persistAuthorization": True, "validatorUrl": None}
    # Request bodies over this many bytes are refused with 413 before they are read.
    MAX_CONTENT_LENGTH = int(os.environ.get("MAX_CONTENT_LENGTH", str(1024 * 1024)))

    PAGINATION_PAGE_SIZE = 20
    MAX_PAGE_SIZE = 100

    @classmethod
    def validate(cls) -> None:
        """Refuse to run production with secrets anybody can read in this repository."""
        problems = []
        for name, dev_default in (
            ("SECRET_KEY", DEV_SECRET_KEY),
            ("JWT_SECRET_KEY", DEV_JWT_SECRET_KEY),
        ):
            value = getattr(cls, name)
            if value == dev_default or len(value) < MIN_SECRET_LENGTH:
                problems.append(f"{name} must be a random value of {MIN_SECRET_LENGTH}+ characters")
        if not cls.DATABASE_URL:
            problems.append("DATABASE_URL must be set")
        if problems:
            raise RuntimeError("Refusing to start in production: " + "; ".join(problems))


class ProductionConfig(Config):
    pass


class DevelopmentConfig(Config):
    APP_ENV = "development"
    # The pages are served over plain http on 127.0.0.1 in development and tests.
    JWT_COOKIE_SECURE = False

    @classmethod
    def validate(cls) -> None:
        pass


class TestConfig(DevelopmentConfig):
    APP_ENV = "testing"
    TESTING = True
    # The tests send real mail to an in-process SMTP server.
    MAIL_SUPPRESS_SEND = False
    JWT_SECRET_KEY = "test-jwt-secret-key-with-enough-length"
    SECRET_KEY = "test-secret-key-with-enough-length-too"
    # Hashing strength is not under test; thousands of scrypt hashes would dominate the run.
    PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"
    # Webhook receivers of the tests listen on 127.0.0.1 over http; the tests of the
    # address rules turn it off (WEBHOOK_ALLOW_PRIVATE_URLS=0).
    WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", True)


CONFIGS: dict[str, type[Config]] = {
    "production": ProductionConfig,
    "development": DevelopmentConfig,
    "testing": TestConfig,
}


def config_for_environment() -> type[Config]:
    name = os.environ.get("APP_ENV", "production")
    try:
        return CONFIGS[name]
    except KeyError:
        raise RuntimeError(f"APP_ENV must be one of {sorted(CONFIGS)}, not {name!r}") from None
