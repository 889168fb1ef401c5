"""The Safe Bench hub: a Flask app over the Flask-free domain layer.

Importing ``server`` loads nothing heavy: the radio bridge uses the domain
layer and settings without Flask (it runs in 512 MB beside the web server),
so the app factory is imported only when an app is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the web app (see server/app.py). Starts no threads and touches no hardware."""
    from server.app import create_app as build

    return build(test_config)
