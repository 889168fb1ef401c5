"""Radio profiles: the host prints a profile with ``safebench radio-profile``, and the official
``meshtastic --configure`` puts it on a radio (here the simulated one, on a pseudo-terminal).

Also the patrol channel's key, kept once per network and rotated on demand,
its share URL and QR codes (read back with zbar, a real decoder), and the
steward's pocket card.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from firmware_config import network, profiles
from firmware_config.network import NetworkError, load_network
from radio_bridge.mesh import apponly_pb2, channel_pb2, config_pb2, module_config_pb2
from radio_bridge.simulator import SimulatedRadio
from server import cli
from server.config import DEFAULTS
from server.domain.radio_commands import POCKET_CARD
from tests.processes import safebench

MESHTASTIC = str(Path(sys.executable).with_name("meshtastic"))
URL = re.compile(r"https://meshtastic\.org/e/#[A-Za-z0-9_-]+")
PRINTED_PIN = re.compile(r"Bluetooth PIN for pairing a phone with this radio: (\d+)")
HOTLINE = "+49 30 1234567"
DURESS = "bluebird"
Config = config_pb2.Config
# --name, then the short name other radios show: from the name's initials, or the first letters of one word.
NAMES = {"hub": ("Bench North hub", "BNH"), "steward": ("Kestrel", "KEST"), "relay": ("Roof North", "RN")}


@pytest.fixture
def instance(tmp_path):
    """A hub's instance folder whose settings name a legal hotline and a duress word."""
    folder = tmp_path / "instance"
    folder.mkdir()
    (folder / "settings.toml").write_text(f'LEGAL_HOTLINE = "{HOTLINE}"\nDURESS_WORD = "{DURESS}"\n')
    return folder


def factory_radio(tmp_path: Path) -> SimulatedRadio:
    """A radio as it comes out of the box: public default key, another region and preset, no owner of ours."""
    return SimulatedRadio(nodes=[], link_path=tmp_path / "radio", rate_limit=False, region="US",
                          modem_preset="MEDIUM_FAST", channel_name="", psk=b"\x01",
                          long_name="Meshtastic 0a51", short_name="0a51")


def configure(radio: SimulatedRadio, profile: Path) -> str:
    """Apply a profile with the real ``meshtastic --configure``, as a host does with the radio on USB."""
    done = subprocess.run([MESHTASTIC, "--port", radio.path, "--timeout", "10", "--configure", str(profile)],
                          capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # The command prints an unknown enum name and carries on, exit status 0.
    assert "does not have" not in done.stdout, done.stdout
    return done.stdout


def stored_key(instance: Path) -> bytes:
    return base64.b64decode((instance / "channel.key").read_text())


def decode_qr(path: Path) -> str:
    done = subprocess.run(["zbarimg", "--raw", "-q", str(path)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, f"zbarimg could not read {path}: {done.stderr}"
    return done.stdout.strip()


def decode_url(url: str) -> apponly_pb2.ChannelSet:
    encoded = url.split("/#", 1)[1]
    assert "=" not in encoded, "the share URL carries no base64 padding"
    return apponly_pb2.ChannelSet.FromString(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def printed_pin(made: subprocess.CompletedProcess) -> int:
    """The PIN ``radio-profile`` told the host to note, on standard error."""
    (pin,) = PRINTED_PIN.findall(made.stderr)
    return int(pin)


def one_digit_six_times(pin: int) -> bool:
    return len(set(str(pin))) == 1


@pytest.mark.parametrize("kind", profiles.KINDS)
def test_each_profile_puts_a_factory_radio_on_the_patrol_channel(kind, instance, tmp_path):
    name, short = NAMES[kind]
    profile = tmp_path / f"{kind}.yaml"
    made = safebench(instance, "radio-profile", kind, "--name", name, "--out", str(profile))
    assert made.returncode == 0, made.stderr
    assert f"--configure {profile}" in made.stdout
    assert mode(profile) == 0o600, "the profile holds the channel key"
    if kind == "relay":
        assert "WARNING" in made.stderr and "ROUTER" in made.stderr and "high, fixed spot" in made.stderr
    else:
        assert "WARNING" not in made.stderr

    with factory_radio(tmp_path) as radio:
        said = configure(radio, profile)
        device = radio.device
        assert device.commits == 1 and not device.in_edit_transaction

    assert device.owner.long_name == name
    assert device.owner.short_name == short

    primary = device.channels[0]
    assert primary.role == channel_pb2.Channel.Role.PRIMARY
    assert primary.settings.name == "SafeBench"
    assert len(primary.settings.psk) == 32 and primary.settings.psk != b"\x01"
    assert primary.settings.psk == stored_key(instance)
    assert not primary.settings.uplink_enabled and not primary.settings.downlink_enabled
    assert primary.settings.module_settings.position_precision == 16

    lora = device.lora
    assert lora.region == Config.LoRaConfig.RegionCode.EU_868
    assert lora.modem_preset == Config.LoRaConfig.ModemPreset.LONG_FAST
    assert lora.use_preset and lora.tx_enabled and lora.hop_limit == 3
    assert not lora.config_ok_to_mqtt and lora.ignore_mqtt
    assert not device.module_config["mqtt"].mqtt.enabled

    role = device.config["device"].device.role
    assert role == Config.DeviceConfig.Role.Value(profiles.ROLES[kind])
    assert (role == Config.DeviceConfig.Role.ROUTER) == (kind == "relay")

    bluetooth = device.config["bluetooth"].bluetooth
    if kind == "hub":
        assert not bluetooth.enabled, "the hub's radio talks to the Pi over USB"
        assert device.config["security"].security.serial_enabled
    else:
        # The PIN the radio got is the one the host was told to note.
        assert bluetooth.enabled and bluetooth.mode == Config.BluetoothConfig.PairingMode.FIXED_PIN
        assert bluetooth.fixed_pin == printed_pin(made) != 123456
        assert 100_000 <= bluetooth.fixed_pin <= 999_999 and not one_digit_six_times(bluetooth.fixed_pin)
        assert "same Bluetooth PIN" not in made.stderr

    if kind == "steward":
        presets = device.canned_messages.split("|")
        assert presets[0] == "CI" and "SOS\a" in presets and "ARREST\a" in presets
        assert [p for p in presets if "\a" in p] == ["SOS\a", "ARREST\a"], "only urgent presets ring"
        canned = device.module_config["canned_message"].canned_message
        assert canned.enabled and not canned.send_bell, "send_bell would ring on every check-in"
        notify = device.module_config["external_notification"].external_notification
        assert notify.enabled and notify.alert_bell and notify.alert_bell_buzzer and notify.alert_bell_vibra
        assert "Setting canned message messages" in said
    else:
        assert device.canned_messages == ""


def test_two_handhelds_get_pins_of_their_own_so_one_learned_pin_pairs_with_one_radio_only(instance, tmp_path):
    applied = {}
    for steward in ("Kestrel", "Wren"):
        profile = tmp_path / f"{steward}.yaml"
        made = safebench(instance, "radio-profile", "steward", "--name", steward, "--out", str(profile))
        assert made.returncode == 0, made.stderr
        assert yaml.safe_load(profile.read_text())["config"]["bluetooth"]["fixed_pin"] == printed_pin(made)
        (tmp_path / steward).mkdir()
        with factory_radio(tmp_path / steward) as radio:
            configure(radio, profile)
            applied[steward] = radio.device.config["bluetooth"].bluetooth.fixed_pin
        assert applied[steward] == printed_pin(made)
    assert applied["Kestrel"] != applied["Wren"]
    # The hub keeps no list of PINs: the steward's note and the radio hold it.
    assert not list(instance.glob("*pin*"))

    # A network whose assembly wants one PIN for all sets BLUETOOTH_PIN, and hears what that costs.
    for kind in ("steward", "relay"):
        shared = safebench(instance, "radio-profile", kind, env={"SAFEBENCH_BLUETOOTH_PIN": "482913"})
        assert shared.returncode == 0, shared.stderr
        assert yaml.safe_load(shared.stdout)["config"]["bluetooth"]["fixed_pin"] == printed_pin(shared) == 482913
        assert profiles.SHARED_PIN_WARNING in shared.stderr and "Traceback" not in shared.stderr
    hub = safebench(instance, "radio-profile", "hub", env={"SAFEBENCH_BLUETOOTH_PIN": "482913"})
    assert hub.returncode == 0 and "PIN" not in hub.stderr, "the hub's radio has Bluetooth off"


def test_a_pin_a_stranger_would_try_first_is_never_drawn(monkeypatch):
    # secrets.randbelow(900_000) + 100_000: the factory's PIN, then one digit six times, then a fair one.
    draws = iter([23_456, 11_111, 899_999, 214_159])
    monkeypatch.setattr(network.secrets, "randbelow", lambda _below: next(draws))
    assert network.new_bluetooth_pin() == 314_159
    assert next(draws, None) is None


def test_every_key_of_every_profile_is_a_setting_the_firmware_has(tmp_path):
    # `meshtastic --configure` skips a key it does not know without a word: check ours against the protobufs.
    net = load_network(DEFAULTS, tmp_path)
    sections = {"config": Config, "module_config": module_config_pb2.ModuleConfig}
    for kind in profiles.KINDS:
        profile = yaml.safe_load(profiles.profile_yaml(kind, profiles.build_profile(kind, net)))
        assert set(profile) <= {"owner", "owner_short", "channel_url", "canned_messages", "config", "module_config"}
        for top, message in sections.items():
            for section, values in profile.get(top, {}).items():
                fields = message.DESCRIPTOR.fields_by_name[section].message_type.fields_by_name
                for key, value in values.items():
                    assert key in fields, f"{kind}: {top}.{section}.{key}"
                    if fields[key].enum_type is not None:
                        assert value in fields[key].enum_type.values_by_name, f"{kind}: {section}.{key}={value}"
    assert cli.PROFILE_KINDS == profiles.KINDS


def test_the_channel_key_is_made_once_per_network_and_rotation_replaces_it(instance):
    first = safebench(instance, "radio-profile", "steward")
    assert first.returncode == 0, first.stderr
    key = stored_key(instance)
    assert len(key) == 32 and key != b"\x01"
    assert mode(instance / "channel.key") == 0o600

    again = safebench(instance, "radio-profile", "steward")
    assert stored_key(instance) == key
    assert URL.search(again.stdout).group() == URL.search(first.stdout).group()

    declined = safebench(instance, "channel", "rotate", stdin="n\n")
    assert declined.returncode != 0 and "every radio" in declined.stdout
    assert stored_key(instance) == key

    rotated = safebench(instance, "channel", "rotate", "--yes")
    assert rotated.returncode == 0, rotated.stderr
    assert "fresh profile" in rotated.stdout and "radio-profile hub" in rotated.stdout
    new_key = stored_key(instance)
    assert len(new_key) == 32 and new_key != key
    assert mode(instance / "channel.key") == 0o600
    assert not (instance / "channel.key.new").exists()
    after = safebench(instance, "radio-profile", "steward")
    new_url = URL.search(after.stdout).group()
    assert new_url != URL.search(first.stdout).group()
    assert decode_url(new_url).settings[0].psk == new_key
    assert new_url in rotated.stdout


def test_the_share_url_and_both_qr_codes_carry_the_channel(instance, tmp_path):
    out = tmp_path / "qr"
    shown = safebench(instance, "channel", "show", "--out-dir", str(out))
    assert shown.returncode == 0, shown.stderr
    url = URL.search(shown.stdout).group()
    assert "hold the channel key" in shown.stderr

    channels = decode_url(url)
    assert len(channels.settings) == 1
    patrol = channels.settings[0]
    assert (patrol.name, patrol.psk) == ("SafeBench", stored_key(instance))
    assert patrol.module_settings.position_precision == 16 and not patrol.uplink_enabled
    lora = channels.lora_config
    assert lora.region == Config.LoRaConfig.RegionCode.EU_868
    assert lora.modem_preset == Config.LoRaConfig.ModemPreset.LONG_FAST
    # An app that scans the code replaces the radio's LoRa config with this one.
    assert lora.use_preset and lora.tx_enabled and lora.hop_limit == 3

    png, svg = out / "patrol-channel.png", out / "patrol-channel.svg"
    assert f"QR code: {png}" in shown.stdout and f"QR code: {svg}" in shown.stdout
    assert png.read_bytes().startswith(b"\x89PNG")
    assert decode_qr(png) == url
    assert decode_qr(svg) == url
    assert mode(png) == mode(svg) == 0o600


def test_the_assembly_may_turn_positions_off_and_let_the_channel_onto_mqtt(instance):
    (instance / "settings.toml").write_text("POSITION_PRECISION_BITS = 0\nMQTT_UPLINK = true\n"
                                            'RADIO_PRESET = "MEDIUM_FAST"\nPATROL_CHANNEL_NAME = "Northside"\n')
    done = safebench(instance, "radio-profile", "steward")
    assert done.returncode == 0, done.stderr
    profile = yaml.safe_load(done.stdout)
    patrol = decode_url(profile["channel_url"])
    assert patrol.settings[0].name == "Northside"
    assert patrol.settings[0].module_settings.position_precision == 0
    assert patrol.settings[0].uplink_enabled and patrol.lora_config.config_ok_to_mqtt
    assert patrol.lora_config.modem_preset == Config.LoRaConfig.ModemPreset.MEDIUM_FAST
    assert profile["config"]["lora"]["modem_preset"] == "MEDIUM_FAST"
    assert "mqtt" not in profile.get("module_config", {}), "the MQTT server is the federation's to set"


@pytest.mark.parametrize("setting, value, says", [
    ("RADIO_REGION", "EU868", "RADIO_REGION"),
    ("RADIO_PRESET", "VERY_LONG_SLOW", "RADIO_PRESET"),
    ("BLUETOOTH_PIN", 123456, "factory"),
    ("BLUETOOTH_PIN", "01234", "six digits"),
    ("BLUETOOTH_PIN", 777777, "one digit six times"),
    ("PATROL_CHANNEL_NAME", "Safe Bench North", "11 bytes"),
    ("POSITION_PRECISION_BITS", 40, "POSITION_PRECISION_BITS"),
    ("MQTT_UPLINK", "maybe", "MQTT_UPLINK"),
])
def test_settings_no_radio_could_use_are_refused_in_plain_words(tmp_path, setting, value, says):
    with pytest.raises(NetworkError, match=says):
        load_network({**DEFAULTS, setting: value}, tmp_path)


def test_the_host_hears_why_a_profile_cannot_be_made(instance):
    (instance / "settings.toml").write_text('RADIO_REGION = "EU868"\n')
    done = safebench(instance, "radio-profile", "hub")
    assert done.returncode != 0
    assert "RADIO_REGION 'EU868'" in done.stderr and "EU_868" in done.stderr and "Traceback" not in done.stderr


def test_the_pocket_card_has_the_commands_the_hotline_and_the_channel_qr_but_never_the_duress_word(
        instance, tmp_path):
    card = tmp_path / "card.html"
    done = safebench(instance, "pocket-card", "--out", str(card))
    assert done.returncode == 0, done.stderr
    assert str(card) in done.stdout
    html = card.read_text()
    for syntax, meaning in POCKET_CARD:
        assert syntax in html and meaning in html
    assert HOTLINE in html
    assert DURESS not in html.lower()
    assert "<script" not in html and "@page" in html

    svg = re.search(r"<svg\b.*?</svg>", html, re.DOTALL)
    assert svg, "the channel's QR code is inline SVG"
    (tmp_path / "card-qr.svg").write_text(svg.group())
    url = URL.search(safebench(instance, "channel", "show", "--out-dir", str(tmp_path)).stdout).group()
    assert decode_qr(tmp_path / "card-qr.svg") == url


def test_the_pocket_card_prints_on_one_a6_page(instance, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = Path("/usr/bin/chromium")
    assert chromium.exists(), "Debian's chromium prints the card here: bash tests/run.sh installs it"
    card = tmp_path / "card.html"
    assert safebench(instance, "pocket-card", "--out", str(card)).returncode == 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(card.as_uri())
            pdf = page.pdf(prefer_css_page_size=True)
        finally:
            browser.close()
    pages = re.findall(rb"/MediaBox\s*\[\s*0 0 ([0-9.]+) ([0-9.]+)\s*\]", pdf)
    assert len(pages) == 1, f"the card takes {len(pages)} pages"
    width_mm, height_mm = (float(size) * 25.4 / 72 for size in pages[0])
    assert round(width_mm) == 105 and round(height_mm) == 148
