"""A neighbour on a borrowed phone makes it forget what they sent.

After a mediation request, a complaint, an aid post or an arrest report, the
thank-you page can be opened again from the phone's history: it shows the
receipt code (or that this phone reported an arrest). Each such page offers a
button that takes it out of the phone's session; the next person at the phone
then finds nothing, and the neighbour's code still works when typed in.
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from sqlalchemy import func, select

from server.domain import cases, complaints
from server.extensions import db
from tests.helpers import submit, text_of

FORGOTTEN = "This phone no longer keeps your receipt code"
_RECEIPT = re.compile(r'class="receipt"[^>]*>\s*([^<\s]+)\s*<')

# Each kind of receipt: the form and what a neighbour puts in it, the receipt page, the
# button's address, and where a code is typed in again (with the words its status shows).
SENT = {
    "mediation": ("/mediation/new", {"what": "Music from the flat below until 3 every night.",
                                     "where": "Larch Street", "who": "", "urgency": "soon", "contact": ""},
                  "/mediation/receipt", "/mediation/receipt/forget", "/mediation/status", "Received"),
    "complaint": ("/complaints/new", {"about": complaints.ABOUT_HANDLING, "what": "Nobody came when we called."},
                  "/complaints/receipt", "/complaints/receipt/forget", "/complaints/status", "Complaint"),
    "aid post": ("/aid/new", {"kind": "offer", "category": "charging", "text": "Two chargers on my porch",
                              "area": "", "days": "3", "contact": ""},
                 "/aid/receipt", "/aid/receipt/forget", "/aid/mine", "Status: Open"),
}


def code_on(response) -> str:
    match = _RECEIPT.search(response.get_data(as_text=True))
    assert match, text_of(response)
    return unescape(match.group(1))


@pytest.mark.parametrize("kind", SENT)
def test_the_phone_forgets_the_code_and_the_code_still_works(client, kind):
    form, data, receipt, forget, lookup, status_words = SENT[kind]
    sent = submit(client, form, data)
    assert sent.request.path == receipt
    code = code_on(sent)
    assert "I have kept it: forget this code on this phone" in text_of(sent)
    assert code_on(client.get(receipt)) == code  # reloading shows it again, as it should until forgotten

    forgotten = submit(client, receipt, {}, action=forget)

    assert forgotten.request.path == lookup
    assert FORGOTTEN in text_of(forgotten)
    assert "The code itself still works: type it here whenever you want to look." in text_of(forgotten)
    assert code not in forgotten.get_data(as_text=True)
    # The next person at this phone opens the receipt page from the history: no code there.
    again = client.get(receipt, follow_redirects=True)
    assert code not in again.get_data(as_text=True)
    assert FORGOTTEN not in text_of(again), "said once, to the person who pressed the button"
    # Pressing the button again (an old tab) is harmless.
    assert FORGOTTEN in text_of(submit(client, lookup, {}, action=forget))

    # The neighbour types the code they kept: it still opens the status.
    looked_up = submit(client, lookup, {"code": code})
    assert looked_up.status_code == 200
    assert status_words in text_of(looked_up) and code in looked_up.get_data(as_text=True)


def test_the_phone_forgets_that_it_reported_an_arrest(app, client):
    thanks = submit(client, "/arrest", {"where": "Market", "count": "1"})
    assert thanks.request.path == "/arrest/thanks"
    assert "Forget on this phone that I sent a report" in text_of(thanks)

    forgotten = submit(client, "/arrest/thanks", {}, action="/arrest/thanks/forget")

    assert forgotten.request.path == "/"
    assert "This phone no longer shows that a report was sent from it" in text_of(forgotten)
    assert "Your report stays with the hub as it was." in text_of(forgotten)
    # From the history, the thank-you page is gone: the arrest form opens instead.
    again = client.get("/arrest/thanks", follow_redirects=True)
    assert again.request.path == "/arrest"
    assert "Thank you" not in text_of(again)
    # The report itself is kept, waiting for dispatch.
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(cases.ArrestCase)) == 1


def test_forgetting_needs_the_form_of_this_phone(app, client):
    """A link or a form on another site cannot empty a neighbour's phone: the button carries a CSRF token."""
    app.config["WTF_CSRF_ENABLED"] = True
    submit(client, "/mediation/new", SENT["mediation"][1])
    refused = client.post("/mediation/receipt/forget")
    assert refused.status_code == 400
    assert code_on(client.get("/mediation/receipt"))
