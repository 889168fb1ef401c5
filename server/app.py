"""The app factory: the web hub built from settings, extensions and blueprints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask

from server import config


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the web app. Starts no threads and touches no hardware."""
    instance = Path(test_config["INSTANCE"]) if test_config and "INSTANCE" in test_config else config.instance_path_from_env()
    instance.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, instance_path=str(instance))
    from server.web.forms import TextOnlyRequest

    app.request_class = TextOnlyRequest  # forms get text, never an uploaded file (web/forms.py)
    load_config(app, instance, test_config)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_template_helpers(app)
    register_commands(app)
    return app


def load_config(app: Flask, instance: Path, test_config: dict[str, Any] | None) -> None:
    app.config.update(config.load_settings(instance, overrides=test_config))
    from server.db import engine_options

    # The driver's own wait for a lock (on SQLite, on top of the PRAGMA set on each connection).
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS",
                          engine_options(app.config["DATABASE_URL"], app.config["DB_BUSY_TIMEOUT_MS"]))
    # An error in the process log never carries its statement's values: they are what people wrote.
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {}).setdefault("hide_parameters", True)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = config.load_secret_key(instance)
    logging.getLogger("server").setLevel(app.config.get("LOG_LEVEL", "INFO"))


def register_extensions(app: Flask) -> None:
    from server.db import configure_sqlite
    from server.extensions import csrf, db, limiter, login_manager, migrate

    db.init_app(app)
    with app.app_context():
        configure_sqlite(db.engine, app.config["DB_BUSY_TIMEOUT_MS"])
    migrate.init_app(app, db, directory=str(Path(__file__).parent / "migrations"), render_as_batch=True)
    from server.web import caching

    caching.init_app(app)  # the public pages anonymous visitors share (issue 14: before Flask, for cookie-less ones)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)


def register_blueprints(app: Flask) -> None:
    from server.web import (
        access,
        aid,
        alerts,
        audit,
        auth,
        bench,
        captive,
        cases,
        compact,
        complaints,
        host,
        keyring,
        languages,
        live,
        mandates,
        mediation,
        radio,
        radio_keys,
        record,
        roles,
        waiting,
    )
    from server.web.converters import RowIdConverter

    # Before any route is added: every <int:id> in a URL is a row id.
    app.url_map.converters["int"] = RowIdConverter
    # First of the request hooks: on the bench WiFi a phone asking for any
    # other site is sent to the bench page before anything else looks at it.
    # Its probe addresses exist only there (CAPTIVE_PORTAL).
    captive.init_app(app)
    languages.init_app(app)  # issue 15: the page in the visitor's language; before anything writes a sentence
    keyring.init_app(app)  # issue 13: the keys of whoever is logged in, in memory only
    access.init_app(app)
    radio.init_app(app)
    alerts.init_app(app)
    cases.init_app(app)
    waiting.init_app(app)  # issue 15: where each role lands, what waits on whom, what nobody may read
    radio_keys.init_app(app)
    for module in (bench, auth, mediation, complaints, aid, compact, host, radio, radio_keys, live, alerts, cases, record):
        app.register_blueprint(module.bp)
    for module in (roles, mandates):  # issue 12: mandates the assembly controls
        app.register_blueprint(module.bp)
    app.register_blueprint(audit.bp)  # issue 12: the public audit of each lunar cycle
    from server.web import board

    app.register_blueprint(board.bp)  # issue 15: the host's board, across the room
    from server.web import tasks

    app.register_blueprint(tasks.bp)  # issue 16: the open task map
    from server.web import allies

    app.register_blueprint(allies.bp)  # issue 16: the allies and their vows
    from server.web import ledger

    app.register_blueprint(ledger.bp)  # issue 16: the mutual-credit ledger and the bail fund
    from server.web import ledger_sheets

    app.register_blueprint(ledger_sheets.bp)  # issue 16: the ledger's printed sheets and their check
    from server.web import federation

    app.register_blueprint(federation.bp)  # issue 17: the federation page and a steward's choice to roam


def register_errorhandlers(app: Flask) -> None:
    from server.web import errors, headers

    errors.init_app(app)
    headers.init_app(app)


def register_template_helpers(app: Flask) -> None:
    from server.web import filters, template_bytecode, template_urls

    filters.init_app(app)
    template_bytecode.init_app(app)  # issue 14: templates compiled at install, read, never written
    template_urls.init_app(app)  # issue 14: a template's links built once, then remembered


def register_commands(app: Flask) -> None:
    from server import cli

    cli.init_app(app)
