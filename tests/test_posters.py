"""A host prints the bench poster and the compact poster, and a phone reads every code on them.

The real ``safebench poster`` and ``safebench compact-poster`` run as a host
would run them; zbar (Debian's ``zbarimg``) decodes each QR code from the PNG
files the commands write and from the picture of the whole poster that
Debian's headless chromium renders, and the payloads are compared byte for
byte with what a phone must read.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

from server.domain import compact, people
from server.extensions import db
from server.printing.wifi import escape_wifi, wifi_payload
from tests.helpers import make_member
from tests.processes import safebench

CHROMIUM = Path("/usr/bin/chromium")
ZBARIMG = shutil.which("zbarimg")
RENDER_TIMEOUT_S = 180

# A network named and locked with every character the WiFi payload escapes.
AWKWARD_SSID = 'Bench;Café "7"'
AWKWARD_PASSWORD = "p:a\\ss,word"


def missing(package: str) -> None:
    pytest.fail(f"{package} is missing: `sudo apt-get install -y {package}`, or run the whole suite with "
                "`bash tests/run.sh`, which installs it.")


def need_chromium() -> None:
    if not CHROMIUM.exists():
        missing("chromium")


def decoded(image: Path) -> bytes:
    """The payload of every QR code zbar finds in ``image``, one after another, as the bytes printed.

    ``-Sbinary``: without a charset marker in the code, zbar tries Shift-JIS
    before UTF-8 and would read "Café" as kanji; phones' readers (ZXing on
    Android, the iPhone camera) take valid UTF-8 as UTF-8. The bytes as they
    are say exactly what is printed.
    """
    if ZBARIMG is None:
        missing("zbar-tools")
    done = subprocess.run([ZBARIMG, "--raw", "-q", "-Sbinary", str(image)], capture_output=True, timeout=60)
    assert done.returncode == 0, f"zbarimg found no code in {image.name} (exit {done.returncode})"
    return done.stdout


def page_text(html: str) -> str:
    """What a reader sees of a page: the text between tags, entities resolved, spaces collapsed."""
    body = html.split("<body>", 1)[1]
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", body)))


def a4_pages(pdf: Path) -> int:
    """How many pages the PDF has, each checked to be A4 (595 × 842 points)."""
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    for box in re.findall(rb"/MediaBox\s*\[\s*([\d.\s]+)\]", data):
        _, _, width, height = (float(n) for n in box.split())
        assert (round(width), round(height)) == (595, 842)
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", data))


# -- the WiFi code, on its own ------------------------------------------------


def test_every_special_character_of_a_wifi_name_or_password_is_escaped():
    assert escape_wifi("plain name") == "plain name"
    assert escape_wifi('a\\b;c,d:e"f') == 'a\\\\b\\;c\\,d\\:e\\"f'
    # The backslash is escaped once, before the others: never twice.
    assert escape_wifi("\\;") == "\\\\\\;"
    assert escape_wifi("Café ☕") == "Café ☕"


def test_the_wifi_payload_is_wpa_with_a_password_and_nopass_without():
    assert wifi_payload(AWKWARD_SSID, AWKWARD_PASSWORD) == 'WIFI:T:WPA;S:Bench\\;Café \\"7\\";P:p\\:a\\\\ss\\,word;;'
    assert wifi_payload("SafeBench", "") == "WIFI:T:nopass;S:SafeBench;;"
    with pytest.raises(ValueError):
        wifi_payload("", "secret-password")


# -- the bench poster ---------------------------------------------------------


def test_a_host_prints_the_bench_poster_and_a_phone_reads_both_codes(tmp_path):
    need_chromium()
    out = tmp_path / "print"
    done = safebench(tmp_path / "instance", "poster", "--out", str(out), timeout=RENDER_TIMEOUT_S, env={
        "SAFEBENCH_BENCH_NAME": "Linden Street Bench",
        "SAFEBENCH_BENCH_WIFI_SSID": AWKWARD_SSID,
        "SAFEBENCH_BENCH_WIFI_PASSWORD": AWKWARD_PASSWORD,
        "SAFEBENCH_LEGAL_HOTLINE": "+49 30 1234567",
    })
    assert done.returncode == 0, done.stderr
    join = 'WIFI:T:WPA;S:Bench\\;Café \\"7\\";P:p\\:a\\\\ss\\,word;;'.encode()
    bench_page = b"http://10.42.0.1/"

    # Each code on its own, as the command wrote it.
    assert decoded(out / "poster-wifi-qr.png") == join
    assert decoded(out / "poster-bench-page-qr.png") == bench_page
    # Both from the picture of the whole poster, as a phone sees it on the bench.
    assert decoded(out / "poster.png") in (join + bench_page, bench_page + join)
    assert a4_pages(out / "poster.pdf") == 1

    # For a camera that reads neither code: the name, the password and the address, in plain text.
    text = page_text((out / "poster.html").read_text(encoding="utf-8"))
    assert "Linden Street Bench" in text
    assert f"Network {AWKWARD_SSID}" in text
    assert f"Password {AWKWARD_PASSWORD}" in text
    assert "2. Open the bench page http://10.42.0.1/" in text
    assert "Legal hotline: +49 30 1234567" in text
    assert "poster.pdf" in done.stdout and "poster.png" in done.stdout


def test_without_chromium_the_poster_is_html_and_the_open_network_code_says_nopass(tmp_path):
    out = tmp_path / "print"
    no_chromium = tmp_path / "bin"  # a PATH with nothing on it
    no_chromium.mkdir()
    done = safebench(tmp_path / "instance", "poster", "--out", str(out),
                     env={"PATH": str(no_chromium), "SAFEBENCH_BENCH_URL": "http://10.42.0.1:8080/"})

    assert done.returncode == 0, done.stderr
    assert "need it (sudo apt-get install chromium)" in done.stderr
    assert not (out / "poster.png").exists() and not (out / "poster.pdf").exists()
    assert decoded(out / "poster-wifi-qr.png") == b"WIFI:T:nopass;S:SafeBench;;"
    assert decoded(out / "poster-bench-page-qr.png") == b"http://10.42.0.1:8080/"
    text = page_text((out / "poster.html").read_text(encoding="utf-8"))
    assert "No password: an open network." in text and "Password" not in text
    assert "http://10.42.0.1:8080/" in text
    assert "hotline" not in text  # none is set, and no other number is ever printed


def test_a_chromium_that_fails_is_reported_with_what_it_said(tmp_path):
    broken = tmp_path / "bin"
    broken.mkdir()
    (broken / "chromium").write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n")
    (broken / "chromium").chmod(0o755)
    done = safebench(tmp_path / "instance", "poster", "--out", str(tmp_path / "print"), env={"PATH": str(broken)})

    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "poster.html is written, but chromium (exit 3) did not write poster.pdf and poster.png" in done.stderr
    assert "cannot open display" in done.stderr
    assert (tmp_path / "print" / "poster.html").exists()


def test_a_wifi_password_that_the_environment_reads_as_json_is_refused_not_printed_wrong(tmp_path):
    env = {"PATH": str(tmp_path), "SAFEBENCH_BENCH_WIFI_PASSWORD": "1e9"}  # JSON: the number 1000000000.0
    refused = safebench(tmp_path / "instance", "poster", "--out", str(tmp_path / "print"), env=env)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "BENCH_WIFI_PASSWORD must be text" in refused.stderr
    assert not (tmp_path / "print" / "poster.html").exists()

    digits = safebench(tmp_path / "instance", "poster", "--out", str(tmp_path / "print"),
                       env={**env, "SAFEBENCH_BENCH_WIFI_PASSWORD": "20261121"})
    assert digits.returncode == 0, digits.stderr
    assert decoded(tmp_path / "print" / "poster-wifi-qr.png") == b"WIFI:T:WPA;S:SafeBench;P:20261121;;"


# -- the compact poster -------------------------------------------------------

LINDEN_COMPACT = """We, the neighbours of Linden Street, agree:

1. We de-escalate first, <always> & everywhere.
2. Nobody is named or photographed without their consent.
"""


def test_the_compact_poster_carries_the_current_text_and_a_code_to_its_page(app, tmp_path):
    need_chromium()
    host_id = make_member(app, "Heron", people.HOST)
    with app.app_context():
        compact.edit_text(db.session, app.config["CLOCK"](), db.session.get(people.Member, host_id), LINDEN_COMPACT,
                          "assembly 20 Nov, item 2: the Linden Street text")
        db.session.commit()

    out = tmp_path / "print"
    done = safebench(Path(app.instance_path), "compact-poster", "--out", str(out), timeout=RENDER_TIMEOUT_S,
                     env={"SAFEBENCH_BENCH_URL": "http://safebench.lan:8080", "SAFEBENCH_TIMEZONE": "Europe/Berlin"})
    assert done.returncode == 0, done.stderr
    compact_page = b"http://safebench.lan:8080/compact"

    assert decoded(out / "compact-poster-qr.png") == compact_page
    assert decoded(out / "compact-poster.png") == compact_page
    assert a4_pages(out / "compact-poster.pdf") >= 1

    text = page_text((out / "compact-poster.html").read_text(encoding="utf-8"))
    for line in LINDEN_COMPACT.splitlines():
        assert line in text
    assert "We look out for each other" not in text  # the default text is replaced, not added to
    assert "http://safebench.lan:8080/compact" in text
    assert "This is version 2 of the compact. This text as of 21 November 2026." in text
    assert "When this was printed, 0 neighbours had signed this version" in text
    assert "Heron" not in text  # who edited it is the host's business
