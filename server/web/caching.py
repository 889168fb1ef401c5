"""A short cache for the public pages a crowd opens at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request, session
from flask_login import current_user

from server.extensions import cache, limiter

F = TypeVar("F", bound=Callable[..., Any])


def _personal() -> bool:
    """A logged-in visitor, or one with a message waiting, gets a page of their own."""
    return current_user.is_authenticated or "_flashes" in session


def public_page(view: F) -> F:
    """Cache an anonymous public page for CACHE_DEFAULT_TIMEOUT seconds (its times are rounded anyway)."""
    cached = cache.cached(unless=_personal, key_prefix="public:%s")(view)
    cached.read_only = True  # type: ignore[attr-defined]
    return cached  # type: ignore[return-value]


def forget_public_pages() -> None:
    """Drop every cached public page, so none outlives a choice about what the public may see.

    A steward who hides their handle must be gone from the bench page and the
    public log at the next reading, not CACHE_DEFAULT_TIMEOUT seconds later.
    The cache holds only these pages, so clearing all of it loses nothing else.
    """
    cache.clear()


@limiter.request_filter  # once per process: the limiter object is shared by every app
def _read_only_request() -> bool:
    """GETs of read-only public pages skip the rate limiter: they carry no limit to check."""
    view = current_app.view_functions.get(request.endpoint or "")
    return request.method == "GET" and getattr(view, "read_only", False)
