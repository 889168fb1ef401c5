"""The templates' url_for: each address built once, then remembered (issue 14).

A page's links are the same on every rendering: the bench page builds about
25 of them, and each is a walk through Werkzeug's routing map (Flask's
url_for, the blueprint's endpoint, the URL defaults, the rule's builder,
quoting): 12 to 15 % of its uncached view time, measured. Templates get a url_for that
remembers what it built, keyed on everything the address is built from: the
endpoint, its values with their types, the anchor, and the request's own
adapter (script root, host, subdomain, scheme). Anything it cannot key
exactly goes to Flask's url_for as before: no request (the command line's
external links), a relative ``.endpoint``, ``_method``, ``_scheme``,
``_external``, a value other than a string, number, bool or None, or an app
that registered URL defaults. Python code keeps Flask's url_for.

Bounded (an LRU), since values such as ``next=request.path`` come from the
visitor: a flood of odd paths only pushes addresses out, it never grows the
process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from flask import Flask, has_request_context
from flask.globals import request_ctx

REMEMBERED = 1024  # addresses; the whole hub has a few hundred distinct links


# Values kept in the key as they are: immutable, and equal only when the address is the same (with their type).
_PLAIN = (str, int, float, bool, type(None))


def init_app(app: Flask) -> None:
    build = app.url_for

    @lru_cache(maxsize=REMEMBERED)
    def built(_place: tuple[Any, ...], endpoint: str, anchor: str | None, values: tuple[Any, ...]) -> str:
        # _place is only part of the key: it describes the request being served, whose adapter builds.
        return build(endpoint, _anchor=anchor, **{name: value for name, _type, value in values})

    def url_for(endpoint: str, /, *, _anchor: str | None = None, _method: str | None = None,
                _scheme: str | None = None, _external: bool | None = None, **values: Any) -> str:
        adapter = request_ctx.url_adapter if has_request_context() else None
        if (adapter is None or _method is not None or _scheme is not None or _external is not None
                or endpoint[:1] == "." or any(app.url_default_functions.values())
                or not all(type(value) in _PLAIN for value in values.values())):
            return build(endpoint, _anchor=_anchor, _method=_method, _scheme=_scheme, _external=_external, **values)
        # The type too: 1, 1.0 and True are equal keys but not the same address.
        key = tuple(sorted((name, type(value), value) for name, value in values.items()))
        return built((adapter.script_name, adapter.server_name, adapter.subdomain, adapter.url_scheme),
                     endpoint, _anchor, key)

    url_for.cache_info = built.cache_info  # type: ignore[attr-defined]
    app.jinja_env.globals["url_for"] = url_for
