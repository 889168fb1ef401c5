"""Flask extensions, created unbound and initialised by the app factory."""

from typing import Any

import click
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from server.domain.base import Base


class MigrateWhenUsed:
    """Flask-Migrate, imported only by a process that migrates or runs ``safebench db``.

    Flask-Migrate imports Alembic whole: 11 MB that the web server kept for as
    long as it ran, to check the schema once at its start (issue 14). Same
    ``init_app`` as ``flask_migrate.Migrate``; the real one is set up the first
    time anything reads ``app.extensions["migrate"]`` (``flask_migrate.upgrade``,
    migrations/env.py) or a ``db`` command runs.
    """

    def init_app(self, app: Flask, db: SQLAlchemy, **options: Any) -> None:
        app.extensions["migrate"] = _MigrateConfigWhenUsed(app, db, options)
        app.cli.add_command(_DbCommandsWhenUsed("db", help="Alembic migrations (Flask-Migrate), for developers."))


class _MigrateConfigWhenUsed:
    def __init__(self, app: Flask, db: SQLAlchemy, options: dict[str, Any]) -> None:
        self._setup = (app, db, options)

    def __getattr__(self, name: str) -> Any:
        from flask_migrate import Migrate

        app, db, options = self._setup
        Migrate().init_app(app, db, **options)  # puts the real configuration in app.extensions["migrate"]
        return getattr(app.extensions["migrate"], name)


class _DbCommandsWhenUsed(click.Command):
    """``safebench db ...``: everything after ``db`` goes to Flask-Migrate's own group, imported now."""

    def __init__(self, name: str, help: str) -> None:
        super().__init__(name, help=help, context_settings={
            "ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})

    def invoke(self, ctx: click.Context) -> Any:
        from flask_migrate.cli import db as commands

        with commands.make_context(ctx.info_name, list(ctx.args), parent=ctx.parent) as real:
            return commands.invoke(real)


db = SQLAlchemy(model_class=Base)
migrate = MigrateWhenUsed()
login_manager = LoginManager()
csrf = CSRFProtect()
# No default limits: public forms and login name their own.
limiter = Limiter(key_func=get_remote_address)
