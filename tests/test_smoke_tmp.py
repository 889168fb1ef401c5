from tests.helpers import login, make_member, text_of


def test_boot(client, app):
    r = client.get("/")
    assert r.status_code == 200, r.data
    make_member(app, "Kestrel", "host")
    r = login(client, "Kestrel")
    assert r.status_code == 200, text_of(r)
    assert "dashboard" in text_of(r)
    assert client.get("/nope").status_code == 404
