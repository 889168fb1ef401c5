"""Receipt codes: what a neighbour keeps instead of an account.

A code is a bearer token for a status page, so it must be unguessable (40
random bits, and lookups are rate-limited) yet easy to read off a phone and
type back: Crockford's base32 has no I, L, O or U, and reading normalises
the look-alikes.
"""

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1", "U": "V"})


def new_receipt_code(prefix: str) -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(8))
    return f"{prefix}-{body[:4]}-{body[4:]}"


def unused_receipt_code(session, column, prefix: str) -> str:  # noqa: ANN001  (a Session, a mapped column)
    """A new code not yet held by any row's ``column`` (collisions are rare, never impossible)."""
    from sqlalchemy import select

    while True:
        code = new_receipt_code(prefix)
        if session.scalar(select(column).where(column == code).limit(1)) is None:
            return code


def normalize_receipt_code(raw: str) -> str:
    """Turn whatever a person typed into the canonical ``P-XXXX-XXXX`` form.

    Returns an empty string when it cannot be a code at all, so callers can
    answer "no such code" without a special case.
    """
    cleaned = "".join(ch for ch in raw.upper() if ch.isalnum()).translate(_LOOKALIKES)
    if len(cleaned) != 9 or not cleaned[0].isalpha():
        return ""
    if any(ch not in ALPHABET for ch in cleaned[1:]):
        return ""
    return f"{cleaned[0]}-{cleaned[1:5]}-{cleaned[5:]}"
