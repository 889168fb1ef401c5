"""Modules the bridge's libraries import at their top and the bridge never uses, loaded only when used.

Imported by radio_bridge/main.py before those libraries (after radio_bridge.builtin_hashes), and by
``safebench serve``, which adds the web server's own list (:func:`for_the_web_server`). Each of these
is megabytes of a process that must fit beside the web server on a Pi Zero 2 W
(the import ladders of tests/benchmarks/memory.py). Whoever does use one gets
the real module at that moment, so nothing the bridge does changes.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any


class _LoadedWhenUsed(types.ModuleType):
    """Stands in for a module until something reads from it; then imports it and passes every read on.

    Names in ``calls`` are functions that some library takes at its import
    (``from x import f``, ``f = x.f``) and calls only on paths the bridge never
    takes: they are handed out as stand-ins that import the module when first called.
    Names in ``parts`` are read from a private copy of the small submodule
    that defines them (its own imports only the standard library's): until
    the real package is loaded, none of its objects exist for them to be
    compared with, and once it is, every read goes to the real package.
    (Not the submodule itself: the package's own import would then fail to
    bind it.)
    """

    def __init__(self, name: str, calls: tuple[str, ...], parts: dict[str, str],
                 search_locations: list[str] | None) -> None:
        super().__init__(name)
        self._calls = calls
        self._parts = parts
        if search_locations is not None:
            self.__path__ = search_locations  # a package's submodules can still be imported on their own

    def _load(self) -> types.ModuleType:
        real = self.__dict__.get("_real")
        if real is None:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            real = self._real = importlib.import_module(self.__name__)
        return real

    def _part(self, name: str) -> types.ModuleType:
        copies = self.__dict__.setdefault("_copies", {})
        if name not in copies:
            found = importlib.util.find_spec(name)  # found on this stand-in's __path__, nothing run
            spec = importlib.util.spec_from_file_location(f"{__name__}:{name}", found.origin)
            copy = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(copy)
            copies[name] = copy
        return copies[name]

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # the import system's own questions: not a use
            raise AttributeError(attribute)
        if attribute in self._parts and "_real" not in self.__dict__:
            return getattr(self._part(self._parts[attribute]), attribute)
        if attribute in self._calls and "_real" not in self.__dict__:
            def called_when_used(*args: Any, **kwargs: Any) -> Any:
                return getattr(self._load(), attribute)(*args, **kwargs)

            called_when_used.__name__ = attribute
            return called_when_used
        return getattr(self._load(), attribute)


def load_when_used(name: str, calls: tuple[str, ...] = (), parts: dict[str, str] | None = None) -> None:
    """Import module ``name`` only when something first reads from it (or calls one of ``calls``).

    The bridge's libraries import at their top modules it never uses, and each
    is megabytes of a process that must fit beside the web server on a Pi
    Zero 2 W (import ladders in tests/benchmarks/memory.py). (importlib's
    LazyLoader does not help here: an ``import`` statement already counts as a use.)
    """
    if name in sys.modules:
        return
    spec = _spec_of(name)
    if spec is not None:
        stand_in = sys.modules[name] = _LoadedWhenUsed(name, calls, parts or {}, spec.submodule_search_locations)
        parent, _, child = name.rpartition(".")
        if parent:
            # `import importlib.metadata` then `importlib.metadata.version(...)` reads the parent's attribute,
            # which the import system sets only when it loads the submodule itself.
            setattr(importlib.import_module(parent), child, stand_in)


def _spec_of(name: str) -> importlib.machinery.ModuleSpec | None:
    """Where module ``name`` is, without importing its package: the package's own import may import it."""
    parent, _, _ = name.rpartition(".")
    if not parent or parent in sys.modules:
        return importlib.util.find_spec(name)
    package = _spec_of(parent)
    if package is None or package.submodule_search_locations is None:
        return None
    return importlib.machinery.PathFinder.find_spec(name, package.submodule_search_locations)


def for_the_web_server() -> None:
    """What the web server's libraries import at their top and ``safebench serve`` never uses (issue 14).

    Called by server/entry.py before anything of Flask is imported. Measured
    with tests/benchmarks/memory.py (session 10), these four took the web
    server from 75.0 to 72.0 MB RSS: OpenSSL's libssl and ``ssl`` are most of
    it (the web server serves plain HTTP on the bench WiFi, and its hashes are
    libcrypto's, which it keeps).
    """
    # werkzeug's development server (waitress serves the hub): with http.server and socketserver, and
    # ssl for the one exception it names at import. Flask and its CLI take two functions from it.
    load_when_used("werkzeug.serving", calls=("run_simple", "is_running_from_reloader"))
    # Flask-WTF's reCAPTCHA field asks Google over urllib.request: http.client, email's parser and ssl.
    load_when_used("urllib.request")
    # click.testing (through Flask's and Flask-Login's test clients) patches the debugger while a test runs.
    load_when_used("pdb")
    # limits' asyncio storages (memcached, MongoDB, Redis wrappers): Flask-Limiter keeps its counts in memory.
    load_when_used("limits.aio")


# meshtastic imports requests for one function the bridge never calls (asking
# PyPI for a newer meshtastic): with urllib3, charset_normalizer and idna, 5 MB.
load_when_used("requests")
# SQLAlchemy imports asyncio for its asyncio extension; asyncio loads ssl and OpenSSL:
# 4 MB the bridge's plain sqlite3 never uses. SQLAlchemy does read three of its names:
# iscoroutine at import, and the two exceptions whenever a statement fails (a locked
# database, say); they come from asyncio's own small modules that define them.
load_when_used("asyncio", parts={"iscoroutine": "asyncio.coroutines", "CancelledError": "asyncio.exceptions",
                                 "TimeoutError": "asyncio.exceptions"})
# SQLAlchemy reads entry points only for a database or plugin it does not know (the
# hub's SQLite it knows), meshtastic its own version only for its command line: 1 MB.
load_when_used("importlib.metadata", calls=("version",))
# meshtastic's table printing, for its command line's node list: 0.6 MB.
load_when_used("tabulate", calls=("tabulate",))
# shutil (which argparse's help, tempfile and the simulated radio import) imports bz2 and lzma only to
# learn that its archive formats can be offered; their compressors and liblzma wait until an archive
# is made: 0.35 MB. Only where Python has them, so shutil still offers no format it lacks.
for _archive in ("bz2", "lzma"):
    if importlib.util.find_spec(f"_{_archive}") is not None:
        load_when_used(_archive)
