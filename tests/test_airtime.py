"""Stories of the scarce resource: seconds on the air, and the ledger that keeps the bridge within them."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radio_bridge.airtime import (
    HOUR,
    PRESETS,
    AirtimeLedger,
    Priority,
    duty_cycle_budget,
    legal_duty_cycle,
    preset_params,
    text_airtime,
    text_payload_bytes,
    time_on_air,
)

# The table in shared/RADIO_FACTS.md: preset -> (ms for a 40-byte text, ms for a 200-byte text),
# computed there with 16 bytes of header and 6 of protobuf around the text.
RADIO_FACTS = {
    "SHORT_FAST": (63, 178),
    "MEDIUM_FAST": (201, 570),
    "LONG_FAST": (723, 1911),
    "LONG_MODERATE": (2298, 7016),
    "LONG_SLOW": (4334, 12722),
}


@pytest.mark.parametrize("preset", RADIO_FACTS)
def test_the_formula_gives_the_radio_facts_table(preset):
    short, long = RADIO_FACTS[preset]
    assert round(time_on_air(16 + 40 + 6, preset) * 1000) == short
    assert round(time_on_air(16 + 200 + 6, preset) * 1000) == long


@pytest.mark.parametrize("preset", RADIO_FACTS)
def test_a_text_message_takes_what_the_table_says_give_or_take_one_group_of_symbols(preset):
    # A 200-byte text needs a two-byte length in the protobuf (7 bytes, not 6),
    # which on SHORT_FAST costs one more group of symbols: 180.9 ms, not 178.
    short, long = RADIO_FACTS[preset]
    params = preset_params(preset)
    group_ms = params.coding_rate * params.symbol_seconds * 1000
    assert abs(text_airtime("x" * 40, preset) * 1000 - short) < 1
    assert abs(text_airtime("x" * 200, preset) * 1000 - long) <= group_ms + 0.5


def test_the_design_notes_figures_hold():
    assert text_airtime("x" * 40, "LONG_FAST") == pytest.approx(0.72, abs=0.01)
    assert text_airtime("x" * 40, "LONG_MODERATE") == pytest.approx(2.3, abs=0.01)


def test_the_text_payload_counts_bytes_and_the_protobuf_around_them():
    assert text_payload_bytes("x" * 40) == 16 + 40 + 6
    assert text_payload_bytes("x" * 127) == 16 + 127 + 6
    assert text_payload_bytes("x" * 128) == 16 + 128 + 7
    assert text_payload_bytes("é" * 20) == 16 + 40 + 6
    assert text_payload_bytes("") == 16 + 4


@pytest.mark.parametrize(
    ("name", "sf", "bw", "cr"),
    [
        ("SHORT_TURBO", 7, 500, 5), ("SHORT_FAST", 7, 250, 5), ("SHORT_SLOW", 8, 250, 5),
        ("MEDIUM_FAST", 9, 250, 5), ("MEDIUM_SLOW", 10, 250, 5), ("LONG_FAST", 11, 250, 5),
        ("LONG_TURBO", 11, 500, 8), ("LONG_MODERATE", 11, 125, 8), ("LONG_SLOW", 12, 125, 8),
        ("VERY_LONG_SLOW", 12, 62.5, 8),
    ],
)
def test_presets_have_the_firmwares_parameters(name, sf, bw, cr):
    preset = preset_params(name)
    assert (preset.spreading_factor, preset.bandwidth_khz, preset.coding_rate) == (sf, bw, cr)


def test_a_preset_is_found_however_it_is_spelt():
    assert preset_params("LongFast") is PRESETS["LONG_FAST"]
    assert preset_params("long-moderate") is PRESETS["LONG_MODERATE"]
    assert preset_params(PRESETS["SHORT_FAST"]) is PRESETS["SHORT_FAST"]
    with pytest.raises(ValueError):
        preset_params("WARP_SPEED")


def test_low_data_rate_optimisation_is_on_only_for_symbols_of_16_ms_or_more():
    on = {name for name, preset in PRESETS.items() if preset.low_data_rate_optimize}
    assert on == {"LONG_MODERATE", "LONG_SLOW", "VERY_LONG_SLOW"}


def test_more_bytes_never_take_less_air_and_the_slow_presets_take_longer():
    for preset in PRESETS:
        times = [time_on_air(n, preset) for n in range(256)]
        assert times == sorted(times)
    order = ["SHORT_TURBO", "SHORT_FAST", "MEDIUM_FAST", "LONG_FAST", "LONG_MODERATE", "LONG_SLOW"]
    assert [text_airtime("x" * 50, p) for p in order] == sorted(text_airtime("x" * 50, p) for p in order)


def test_a_packet_lora_cannot_carry_is_refused():
    with pytest.raises(ValueError):
        time_on_air(256, "LONG_FAST")
    with pytest.raises(ValueError):
        time_on_air(-1, "LONG_FAST")
    with pytest.raises(ValueError):
        text_airtime("x" * 300, "LONG_FAST")


@pytest.mark.parametrize(
    ("region", "legal"),
    [("EU_868", 0.10), ("EU_433", 0.10), ("EU_866", 0.025), ("EU_N_868", 0.10), ("UA_433", 0.10),
     ("UA_868", 0.01), ("TH", 0.10), ("US", None), ("ANZ", None), ("JP", None), ("nonsense", None)],
)
def test_regions_duty_cycles_are_those_the_firmware_enforces(region, legal):
    assert legal_duty_cycle(region) == legal


def test_the_budget_is_the_configured_share_never_above_the_law():
    assert duty_cycle_budget("EU_868") == pytest.approx(360)
    assert duty_cycle_budget("eu_868") == pytest.approx(360)
    assert duty_cycle_budget("US") == pytest.approx(360)  # no law, our own 10 %
    assert duty_cycle_budget("US", fraction=0.05) == pytest.approx(180)
    assert duty_cycle_budget("EU_868", fraction=0.5) == pytest.approx(360)
    assert duty_cycle_budget("EU_866") == pytest.approx(90)
    with pytest.raises(ValueError):
        duty_cycle_budget("US", fraction=0)


def test_an_eu_hour_holds_about_190_long_alerts_on_long_fast():
    one = text_airtime("x" * 200, "LONG_FAST")
    assert 185 <= int(duty_cycle_budget("EU_868") // one) <= 190


NOW = 10_000.0


def test_a_quiet_hour_leaves_the_whole_budget():
    ledger = AirtimeLedger()
    assert ledger.used(NOW) == 0
    assert ledger.can_send(NOW, 2.0, Priority.ROUTINE, budget_seconds=360)
    assert ledger.remaining(NOW, Priority.ROUTINE, 360) == pytest.approx(270)
    assert ledger.remaining(NOW, Priority.URGENT, 360) == pytest.approx(360)


def test_routine_traffic_stops_at_three_quarters_and_an_sos_still_goes():
    ledger = AirtimeLedger()
    for i in range(135):  # 270 s of check-in confirmations over the hour
        ledger.record(NOW - 3000 + i * 20, 2.0)
    assert ledger.used(NOW) == pytest.approx(270)
    assert not ledger.can_send(NOW, 0.1, Priority.ROUTINE, budget_seconds=360)
    assert ledger.can_send(NOW, 2.0, Priority.URGENT, budget_seconds=360)
    assert ledger.can_send(NOW, 2.0, "urgent", budget_seconds=360, urgent_reserve_fraction=0.25)


def test_urgent_traffic_too_stops_at_the_budget():
    ledger = AirtimeLedger([(NOW - 100, 359.0)])
    assert ledger.can_send(NOW, 1.0, Priority.URGENT, budget_seconds=360)
    assert not ledger.can_send(NOW, 1.5, Priority.URGENT, budget_seconds=360)


def test_what_was_sent_more_than_an_hour_ago_no_longer_counts():
    ledger = AirtimeLedger([(NOW - HOUR - 1, 100.0), (NOW - HOUR, 50.0), (NOW - 10, 5.0)])
    assert ledger.used(NOW) == pytest.approx(5.0)
    assert ledger.used(NOW, window=5) == 0


def test_routine_traffic_learns_when_it_may_go_again():
    ledger = AirtimeLedger([(NOW - 3000, 200.0), (NOW - 1000, 60.0), (NOW - 500, 10.0)])
    # 270 s used: routine (270 s allowed) is full; the big entry leaves the window at NOW + 600.
    assert ledger.next_available(NOW, 2.0, Priority.ROUTINE, budget_seconds=360) == NOW + 600
    assert ledger.next_available(NOW, 2.0, Priority.URGENT, budget_seconds=360) == NOW
    assert ledger.next_available(NOW, 300.0, Priority.ROUTINE, budget_seconds=360) is None


def test_the_bridge_seeds_the_ledger_from_the_outbox_rows_as_datetimes():
    now = datetime(2026, 11, 21, 20, 0, 0)
    rows = [(now - timedelta(minutes=50), 200.0), (now - timedelta(minutes=10), 70.0)]
    ledger = AirtimeLedger(rows)
    assert ledger.used(now) == pytest.approx(270)
    assert ledger.next_available(now, 1.0, Priority.ROUTINE, 360) == now + timedelta(minutes=10)
    assert ledger.next_available(now, 1.0, Priority.URGENT, 360) == now


def test_a_clock_stepped_back_counts_the_future_records_and_ignores_the_absurd_ones():
    ledger = AirtimeLedger([(NOW + 600, 100.0), (NOW + 10 * HOUR, 1000.0)])
    assert ledger.used(NOW) == pytest.approx(100)


def test_a_bridge_running_for_days_keeps_only_recent_records():
    ledger = AirtimeLedger()
    for i in range(5000):  # one a minute for three and a half days
        ledger.record(i * 60.0, 1.0)
        ledger.can_send(i * 60.0, 1.0, Priority.ROUTINE, 360)
    assert len(ledger) <= 61
    assert ledger.used(4999 * 60.0) == pytest.approx(60)


def test_nonsense_is_refused():
    with pytest.raises(ValueError):
        AirtimeLedger().record(NOW, -1)
    with pytest.raises(ValueError):
        AirtimeLedger(window=0)
    with pytest.raises(ValueError):
        AirtimeLedger().used(NOW, window=2 * HOUR)
    with pytest.raises(ValueError):
        AirtimeLedger().can_send(NOW, 1, Priority.ROUTINE, 360, urgent_reserve_fraction=1.5)
    with pytest.raises(ValueError):
        AirtimeLedger().can_send(NOW, 1, "whenever", 360)


@settings(max_examples=150)
@given(
    st.lists(st.tuples(st.floats(NOW - 2 * HOUR, NOW), st.floats(0, 20)), max_size=60),
    st.floats(0, 30),
    st.sampled_from(list(Priority)),
    st.floats(0, 0.9),
)
def test_the_time_the_ledger_names_is_the_first_that_fits(spent, seconds, priority, reserve):
    ledger = AirtimeLedger(spent)
    budget = 120.0
    when = ledger.next_available(NOW, seconds, priority, budget, reserve)
    if when is None:
        assert seconds > ledger.allowance(priority, budget, reserve)
        return
    assert when >= NOW
    # Asked in the order time runs: the ledger forgets what is behind "now".
    if when > NOW:
        assert not ledger.can_send(when - 1e-6, seconds, priority, budget, reserve)
    assert ledger.can_send(when, seconds, priority, budget, reserve)
