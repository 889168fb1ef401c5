"""The bridge's hashes from Python's own implementations, not OpenSSL's libcrypto: 3.4 MB of its memory.

Imported by radio_bridge/main.py right after radio_bridge.loaded_when_used,
before anything imports ``hashlib`` or ``hmac``. Those two load OpenSSL's
``_hashlib`` when it is there, and with it libcrypto (3.4 MB of a process
that must fit beside the web server on a Pi Zero 2 W; memory.py measures it).
The bridge reaches them only through ``secrets`` (which the meshtastic
library and the domain layer import; it draws from os.urandom and takes
``compare_digest`` from hmac) and for a few SHA-256 digests of a few dozen
bytes (power_record, radio_trust, the simulated radio), which Python's
builtin ``_sha256`` computes alike; nothing it runs asks for what only
OpenSSL offers (``pbkdf2_hmac``, ``scrypt``: its key derivation is
libsodium's, through nacl). Imported with ``_hashlib`` out of reach, both
fall back to the standard library's own code, as they do on a Python built
without OpenSSL; ``_hashlib`` is in reach again right after, so whatever
imports it later (``ssl`` does not) still gets it.

Not for the web server: werkzeug's password hashes are OpenSSL's ``scrypt``,
and its ``ssl`` loads libcrypto anyway.
"""

from __future__ import annotations

import importlib.util
import sys


def _builtins_present() -> bool:
    """Python's builtin digests, which hashlib falls back to (3.12 merged the SHA-2 ones into ``_sha2``)."""
    sha2 = ("_sha2",) if sys.version_info >= (3, 12) else ("_sha256", "_sha512")
    return all(importlib.util.find_spec(name) is not None for name in ("_md5", "_sha1", *sha2, "_sha3", "_blake2"))


if "_hashlib" not in sys.modules and "hashlib" not in sys.modules and "hmac" not in sys.modules \
        and _builtins_present():
    sys.modules["_hashlib"] = None  # `import _hashlib` raises ImportError while this stands
    try:
        import hashlib  # noqa: F401
        import hmac  # noqa: F401
    finally:
        del sys.modules["_hashlib"]
