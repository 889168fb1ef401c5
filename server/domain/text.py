"""Cleaning free text from forms, radios and terminals before it is kept."""

import unicodedata

from server.domain.errors import Invalid
from server.i18n import N_
from server.i18n import gettext as _

# The names "Please fill in the place." says, marked for the catalogs: a message names the field in the
# reader's language (an unlisted name is shown as it is).
FIELD_NAMES = (
    N_("agency"), N_("area name"), N_("assembly decision"), N_("compact text"), N_("concern"), N_("contact"),
    N_("decision place"), N_("decision"), N_("description"), N_("handle"), N_("landmark name"), N_("message"),
    N_("name or mark"), N_("note"), N_("outcome"), N_("people involved"), N_("place"), N_("reason"),
    N_("way to reach you"), N_("what we will revise"),
)


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
        raise Invalid(_("Please fill in the %(field)s.", field=_(field)), field=field)
    if len(cleaned) > max_length:
        raise Invalid(_("The %(field)s is too long: %(n)d characters, at most %(max_length)d.",
                        field=_(field), n=len(cleaned), max_length=max_length), field=field)
    return cleaned
