"""When something goes wrong, the person is told plainly, keeps their words, and never sees a stack trace."""

from __future__ import annotations

import pytest

from server.web.access import public
from tests.helpers import PASSWORD, csrf_token, make_app, make_member, submit, text_of


@pytest.fixture
def limited_client(tmp_path, clock):
    """A hub with its real rate limits on, as on the bench."""
    app = make_app(tmp_path / "limited", clock, RATELIMIT_ENABLED=True)
    make_member(app, "Kestrel", "host")
    return app.test_client()


def test_guessing_passwords_is_throttled_and_the_real_password_then_waits_too(limited_client):
    for _ in range(5):
        wrong = submit(limited_client, "/login", {"handle": "Kestrel", "password": "guess guess guess"})
        assert wrong.status_code == 400 and "do not match" in text_of(wrong)
    blocked = submit(limited_client, "/login", {"handle": "Kestrel", "password": PASSWORD})
    assert blocked.status_code == 429
    page = text_of(blocked)
    assert "Too many tries from this phone" in page and "Nothing was saved" in page
    # The password is never echoed back, even on the error page.
    assert PASSWORD not in blocked.get_data(as_text=True)


def test_a_form_without_its_csrf_token_is_refused_and_the_words_are_kept(client):
    refused = client.post("/login", data={"handle": "Kestrel", "password": PASSWORD})
    assert refused.status_code == 400
    page = text_of(refused)
    assert "This form had expired" in page and "Kestrel" in page
    assert PASSWORD not in refused.get_data(as_text=True)


def test_an_oversized_post_gets_a_plain_page_not_a_crash(client):
    token = csrf_token(client, "/login")
    huge = client.post("/login", data={"csrf_token": token, "handle": "x" * 200_000, "password": "y"})
    assert huge.status_code == 413
    assert "too much to send" in text_of(huge)


def test_unknown_addresses_and_wrong_methods_get_friendly_pages(client):
    missing = client.get("/wp-admin/setup.php")
    assert missing.status_code == 404 and "There is no page at this address" in text_of(missing)
    wrong_method = client.delete("/")
    assert wrong_method.status_code == 405 and "bench page" in text_of(wrong_method)


def test_an_unexpected_error_is_the_hubs_fault_and_shows_no_stack_trace(tmp_path, clock, caplog):
    app = make_app(tmp_path / "i", clock, TESTING=False)

    @public
    def broken():  # noqa: ANN202
        raise RuntimeError("disk on fire")

    app.add_url_rule("/broken", view_func=broken)
    response = app.test_client().get("/broken")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "the hub&#39;s fault, not yours" in page or "the hub's fault, not yours" in page
    assert "disk on fire" not in page and "Traceback" not in page
    assert "disk on fire" in caplog.text  # but the host can find it in the log


def test_every_page_refuses_framing_sniffing_and_scripts(client):
    headers = client.get("/").headers
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "script-src" not in headers["Content-Security-Policy"]  # falls back to default-src 'none'
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    cookie_page = client.get("/login")
    assert any("HttpOnly" in c and "SameSite=Lax" in c for c in cookie_page.headers.getlist("Set-Cookie"))


def test_a_crowd_shares_one_rendering_of_the_bench_page_but_a_host_always_sees_their_own(tmp_path, clock):
    app = make_app(tmp_path / "cached", clock, RATELIMIT_ENABLED=False)
    make_member(app, "Kestrel", "host", "steward", node="!a1b2c3d4")
    neighbour, host = app.test_client(), app.test_client()
    assert "No steward is on patrol" in text_of(neighbour.get("/"))
    submit(host, "/login", {"handle": "Kestrel", "password": PASSWORD})
    with app.app_context():
        from server.domain import patrol, people
        from server.extensions import db

        patrol.start_shift(db.session, clock(), people.get_member(db.session, "Kestrel"), None, patrol.SOURCE_WEB)
        db.session.commit()
    # The neighbour's copy is a few seconds old; the host's page is their own and current.
    assert "No steward is on patrol" in text_of(neighbour.get("/"))
    host_page = text_of(host.get("/"))
    assert "1 steward on patrol." in host_page and "Log out Kestrel" in host_page
