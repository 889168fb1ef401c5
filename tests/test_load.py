"""A busy night at the bench, at the scale the issue names, against the real hub and the real radio bridge.

100 neighbours, each a phone with its own address on the bench WiFi, send
three public forms each (mediation, aid offers and asks, arrest reports) while
20 hosts and dispatchers keep the live log open, the radio bridge ingests a
burst of 1,000 check-ins, and one phone fires 30 mediation requests at once.
The hub runs as it ships (``safebench serve``, waitress, rate limits on), the
bridge as ``safebench bridge`` on the simulated radio's pty. The night runs
once (about 30-40 s on 2 cores); each story below reads a different part of
what it left. How fast it all was is the benchmark's business
(``tests/benchmarks/load.py``); these stories assert what happened.
"""

from __future__ import annotations

import http.client

import pytest

from tests.benchmarks.load import (
    FORMS,
    MEDIATION,
    NEIGHBOUR_NET,
    WATCHER_NET,
    Hub,
    Night,
    Phone,
    address,
    busy_night,
    free_port,
    log_in,
    prepare_instance,
)

NEIGHBOURS = 100
POSTS_EACH = 3
WATCHERS = 20
CHECKINS = 1000
FLOOD = 30
IDLE_PHONES = 150  # more than waitress's default of 100 open connections


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Night:
    return busy_night(tmp_path_factory.mktemp("busy-night"), neighbours=NEIGHBOURS, posts_each=POSTS_EACH,
                      watchers=WATCHERS, checkins=CHECKINS, flood_tries=FLOOD, baseline=False)


def test_a_hundred_neighbours_posting_at_once_all_get_their_receipt_and_no_error(night):
    crowd = night.busy
    assert len(crowd.posts) == NEIGHBOURS * POSTS_EACH
    # No 5xx, no dropped connection: every request got a page, and every form its success page.
    assert crowd.errors == []
    assert not [status for status in crowd.statuses if status >= 500], dict(crowd.statuses)
    failed = [(post.kind, post.statuses) for post in crowd.posts if not post.saved_page]
    assert failed == []
    # Each mediation request and aid post came back with its own receipt code.
    codes = [post.code for post in crowd.posts if post.kind != "arrest"]
    assert None not in codes and len(set(codes)) == len(codes)


def test_every_success_page_is_a_row_and_every_row_had_its_success_page(night):
    count = night.count
    assert count.integrity == "ok"
    # Lost: a neighbour was told "saved" and the hub has nothing. Unexplained: a row nobody was told about.
    assert count.missing == [] and count.unexplained == set()
    for kind in FORMS:
        assert count.rows[kind] == count.shown[kind], kind
        # The codes the phones showed are the codes the database holds.
        assert count.codes[kind] == count.shown_codes[kind], kind


def test_every_arrest_report_opens_a_case_with_its_own_code_its_log_line_and_its_broadcast(night):
    arrests = [post for post in night.busy.posts if post.kind == "arrest"]
    assert len(arrests) >= 30  # enough reports at once for two to race for the next code
    assert night.count.cases_without_parts == []
    # "ACK C7" on a handheld and dispatch's "C7" must mean one case, however many arrived together.
    assert night.count.duplicate_case_codes == []


def test_the_burst_of_check_ins_is_logged_exactly_once_and_every_watcher_sees_each_once(night):
    burst = night.burst
    assert burst.delivered == CHECKINS
    notes = sorted(note for _, note, _ in night.checkins)
    assert notes == sorted(burst.notes)  # all 1,000, none twice
    wanted = {entry_id for entry_id, _, _ in night.checkins}
    assert len(night.watchers) == WATCHERS
    for watcher in night.watchers:
        assert wanted <= set(watcher.received), f"watcher {watcher.phone.source} missed check-ins"
        assert watcher.duplicates == 0
        assert set(watcher.statuses) == {200}


def test_one_phone_flooding_a_form_gets_exactly_its_limit_and_a_plain_too_many_page_for_the_rest(night):
    flood = night.flood
    assert flood is not None and len(flood.posts) == FLOOD
    # Thirty at once from one address, all in the same second: the limit holds exactly under concurrency.
    assert len(flood.saved) == flood.limit
    refused = flood.refused
    assert len(refused) == FLOOD - flood.limit
    for post in refused:
        assert post.statuses[-1] == 429
        # A human message, nothing saved, and their words to copy: never a stack trace.
        assert "Nothing was saved" in post.page_text and "Traceback" not in post.page_text
        assert "Music from the flat above the bakery" in post.page_text
    # The flood's saved requests are rows like any other; its refused ones are not.
    assert {post.marker for post in flood.saved} <= night.count.rows[MEDIATION]
    assert not {post.marker for post in refused} & night.count.rows[MEDIATION]
    # Meanwhile the hundred other phones were unaffected: nobody else was told "too many".
    assert 429 not in night.busy.statuses


def test_phones_keeping_their_connection_open_do_not_lock_out_the_next_phone_or_a_host(tmp_path):
    """A phone keeps its connection open after a page loads; 150 of them at the bench, all idle.

    At waitress's default limit of 100 open connections the next phone, and a
    host opening the live log, got no answer until an idle one timed out two
    minutes later.
    """
    instance = tmp_path / "instance"
    (host_handle,) = prepare_instance(instance, watchers=1)
    hub = Hub(instance, free_port(), tmp_path / "hub.log").start()
    idle: list[Phone] = []
    try:
        try:
            for n in range(1, IDLE_PHONES + 1):
                idle.append(Phone(hub.port, address(NEIGHBOUR_NET, n), timeout=10))
                assert idle[-1].get("/").status == 200
            late = Phone(hub.port, address(NEIGHBOUR_NET, IDLE_PHONES + 1), timeout=10)
            assert late.get("/").status == 200
            host = Phone(hub.port, address(WATCHER_NET, 1), timeout=10)
            log_in(host, host_handle)
            assert host.get("/host/live").status == 200
        except (TimeoutError, http.client.HTTPException) as error:
            pytest.fail(f"with {len(idle) - 1} phones connected and idle, the hub did not answer: {error!r}")
    finally:
        for phone in idle:
            phone.close()
        hub.stop()
