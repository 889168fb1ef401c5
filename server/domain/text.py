"""Cleaning free text from forms, radios and terminals before it is kept."""

import unicodedata

from server.domain.errors import Invalid


def clean_text(value: str | None, *, field: str, max_length: int, required: bool = True, multiline: bool = False) -> str:
    """Strip control characters and surrounding space; enforce presence and length.

    Control characters (other than newlines in multi-line fields) never
    reach the database: they break terminals and radio displays.
    """
    # Browsers send CRLF line breaks; count and keep them as one newline.
    value = (value or "").replace("\r\n", "\n")
    kept = []
    for ch in value:
        if ch in "\r\n\t" and multiline:
            kept.append("\n" if ch != "\t" else " ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co"):
            kept.append(" " if ch in "\r\n\t" else "")
        else:
            kept.append(ch)
    cleaned = "".join(kept).strip()
    if multiline:
        lines = [line.rstrip() for line in cleaned.split("\n")]
        cleaned = "\n".join(lines)
    if required and not cleaned:
        raise Invalid(f"Please fill in the {field}.", field=field)
    if len(cleaned) > max_length:
        raise Invalid(f"The {field} is too long: {len(cleaned)} characters, at most {max_length}.", field=field)
    return cleaned
