"""The jobboard application factory."""

from __future__ import annotations

import logging

import click
from flask import Flask
from sqlalchemy import text
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, config_for_environment, sqlalchemy_url
from jobboard import logs, metrics
from jobboard.autocommit_reads import register_autocommit_reads
from jobboard.extensions import api, db, jwt, mail, migrate
from jobboard.request_rules import bound_request_statements, register_request_rules

logger = logging.getLogger(__name__)


def create_app(config_class: type[Config] | None = None) -> Flask:
    config_class = config_class or config_for_environment()
    config_class.validate()
    app = Flask(__name__)
    app.config.from_object(config_class)
    app.config["SQLALCHEMY_DATABASE_URI"] = sqlalchemy_url(resolve_database_url(config_class))
    configure_logging(app)
    logs.init_app(app)
    register_request_rules(app)
    trust_proxies(app)
    register_extensions(app)
    bound_request_statements(app)
    register_autocommit_reads(app)
    register_blueprints(app)
    metrics.init_app(app)
    register_error_handlers(app)
    register_commands(app)
    return app


def resolve_database_url(config_class: type[Config]) -> str:
    if config_class.DATABASE_URL:
        return config_class.DATABASE_URL
    from jobboard import embedded_db

    return embedded_db.database_url()


def trust_proxies(app: Flask) -> None:
    """With TRUSTED_PROXIES=N, the client IP is the N-th address from the right of
    X-Forwarded-For (what the N proxies in front of us appended); with 0 the header is
    ignored and the client IP is the socket's peer. Only X-Forwarded-For is honoured: no
    response depends on X-Forwarded-Host or the Host header."""
    proxies = int(app.config["TRUSTED_PROXIES"])
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=0, x_host=0)  # type: ignore[method-assign]


def configure_logging(app: Flask) -> None:
    """LOG_LEVEL for the application's own loggers (`jobboard.*`, which `app.logger` is
    too), and LOG_LEVEL and LOG_FORMAT for the process when nothing configured logging
    before (the web process, the Flask CLI; the worker configures its own the same way,
    jobboard/logs.py)."""
    level = app.config["LOG_LEVEL"]
    logs.formatter_for(app.config["LOG_FORMAT"])  # an unknown format stops here
    if not logging.getLogger().handlers:
        logs.configure_process(level, app.config["LOG_FORMAT"])
    logging.getLogger(__name__).setLevel(level)
    # Procrastinate announces its built-in tasks at INFO whenever an App is built (at
    # import, in every process): nothing an operator can act on.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.WARNING)
    if click.get_current_context(silent=True) is not None:  # created by the `flask` CLI
        from jobboard.cli_output import quiet_libraries

        quiet_libraries()


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=str(_migrations_dir()))
    api.init_app(app)
    jwt.init_app(app)
    mail.init_app(app)

    from jobboard.auth.tokens import register_jwt_callbacks

    register_jwt_callbacks(jwt)


def _migrations_dir():
    from config import PROJECT_ROOT

    return PROJECT_ROOT / "migrations"


def register_blueprints(app: Flask) -> None:
    from flask_jwt_extended.exceptions import CSRFError

    from jobboard.admin.routes import blp as admin_blp
    from jobboard.admin.routes import pages as admin_pages
    from jobboard.auth.routes import blp as auth_blp
    from jobboard.auth.sessions import blp as sessions_blp
    from jobboard.auth.sessions import csrf_refused
    from jobboard.bids.routes import blp as bids_blp
    from jobboard.dashboard.routes import blp as dashboard_blp
    from jobboard.dashboard.routes import pages as dashboard_pages
    from jobboard.events import building
    from jobboard.events.emails import register_email_filters
    from jobboard.events.openapi import document_events
    from jobboard.events.payloads import event_data
    from jobboard.events.routes import blp as events_blp
    from jobboard.jobs.routes import blp as jobs_blp
    from jobboard.plans.routes import blp as plans_blp
    from jobboard.reviews.routes import blp as reviews_blp
    from jobboard.web.routes import pages as web_pages
    from jobboard.webhooks.routes import blp as webhooks_blp

    for blueprint in (
        auth_blp,
        sessions_blp,
        jobs_blp,
        bids_blp,
        dashboard_blp,
        plans_blp,
        reviews_blp,
        events_blp,
        webhooks_blp,
        admin_blp,
    ):
        api.register_blueprint(blueprint)
    app.register_blueprint(dashboard_pages)
    app.register_blueprint(admin_pages)
    app.register_blueprint(web_pages)
    # After JWTManager's own handler, which would answer 401.
    app.register_error_handler(CSRFError, csrf_refused)
    document_events(api)
    register_email_filters(app)
    # The events spine sits below the blueprints; their schemas dump its data (building.py).
    building.install(event_data)

    @app.get("/health")
    def health():
        """Liveness and database reachability."""
        try:
            db.session.execute(text("SELECT 1"))
        except Exception:  # any failure to reach the database means "unhealthy"
            logger.exception("health check: database unreachable")
            db.session.rollback()
            return {"status": "degraded", "database": "unreachable"}, 503
        return {"status": "ok", "database": "ok"}


def register_error_handlers(app: Flask) -> None:
    from jobboard.errors import register_error_handlers as register

    register(app)


def register_commands(app: Flask) -> None:
    from jobboard.cli import register_cli

    register_cli(app)
