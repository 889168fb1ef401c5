"""What a neighbour's phone keeps of what they sent, and how they make it forget.

A neighbour has no account: after a mediation request, a complaint, an aid
post or an arrest report, the session cookie carries the receipt (or, for an
arrest report, who was told) so that reloading the thank-you page shows it
again instead of sending twice. On a borrowed or shared phone the next person
could open that page from the history, so every such page offers a button that
takes it out of the session. The record at the hub is untouched: a receipt
code typed in again still opens its status.
"""

from __future__ import annotations

from flask import flash, redirect, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from server.i18n import N_

CODE_FORGOTTEN = N_("This phone no longer keeps your receipt code: going back, or opening the page from the history, "
                  "no longer shows it. The code itself still works: type it here whenever you want to look.")


def forget_code(*keys: str, then: str, said: str = CODE_FORGOTTEN) -> ResponseReturnValue:
    """Drop ``keys`` from the session, and go to ``then`` (an endpoint) saying so."""
    for key in keys:
        session.pop(key, None)
    flash(_(said))  # a text marked N_ is translated here; one already translated passes through
    return redirect(url_for(then))
