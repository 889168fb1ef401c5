"""The steward command grammar: what a handheld may say to the hub, read from one text message.

Pure parsing, no database: the radio bridge hands each text to
``parse_command`` and calls the domain services the answer names. Anything
that is not a command comes back as verb UNKNOWN with a short reason the
bridge may send back; nothing a radio can send makes this raise.

The grammar, as printed on the pocket card (``POCKET_CARD``):

=============================  ==========================================
``SOS [where]``                I need help now: alerts everyone on shift
``ON [area]`` (``START``)      start my shift
``OFF`` (``END``)              end my shift
``CI [note]`` (``OK``,         check in
``CHECKIN``, ``CHECK IN``)
``INC what, where``            log an incident (``@`` works as the comma)
``ARREST where [n] [note]``    arrest witnessed: opens a case
``ACK A7``                     I am responding to alert A7
``CLR A7`` (``CLEAR``)         alert A7 is resolved
``STATUS`` (``STAT``)          who is on shift, open alerts
``HELP [command]`` (``?``)     the commands, or how to use one
``PAY kitchen 3 [memo]``       offer 3 credits to a crew or a member
``GOT P12``                     confirm transfer P12 offered to me
``TAKE T4``                    I take task T4 from the open task map
``DONE T4 [result]``           task T4 is done, with a one-line result
``SAFE [area]``                the nearest ally open now (a shelter first)
=============================  ==========================================

How a message is read:

- Case does not matter; surrounding space, the bell character a canned
  message may carry, other control characters, punctuation before the
  command word ("/sos", "'OK'") and straight after it ("ci." "ok!"
  "ACK: A7") are ignored. A message starting with "?" is HELP.
- The command is the first word. Typing slips are forgiven only in the long,
  harmless words (CHECKIN, INCIDENT, STATUS, HELP: one slip, two in the
  longer ones) and only when one word is clearly meant. Short words (ON, OK,
  CI, ...) must be exact: one letter turns ON into OK.
- SOS and ARREST are never guessed: a false SOS wakes everyone, a false
  arrest opens a case. Something that looks like them ("SOD", "S0S",
  "MAYDAY", "911", the 🆘 emoji, "AREST"), or a message that is no command
  but has SOS in it ("need help SOS"), is UNKNOWN with ``suggestion`` set,
  so the bridge can answer "Did you mean SOS? Send SOS" straight away: for
  someone in trouble that reply is worth its airtime.
- SOS and ARREST are never refused for what follows them: an over-long place
  or note is cut short, not rejected, and ``ARREST`` alone is accepted (the
  node's last position, or a question from dispatch, fills in the place).
- ARREST: the place comes first. The count is the first stand-alone number
  of one or two digits (1-99) *after* the first word, and whatever follows
  it is the note: "ARREST Market 3 two officers" is place Market, 3 people,
  note "two officers"; "ARREST 12 Baker St 2" is 2 people at 12 Baker St.
  A place that ends in a number takes a comma and then the count:
  "ARREST Bus stop 12, 2" (a number straight after the first comma is the
  count, and everything before that comma is the place). With no count,
  a comma ends the place: "ARREST Market, riot van". "ARREST 3" alone is a
  count with no place. Number words ("two") are never counts.
- INC: what happened, then the place after the first comma (or "@").
  Without one, it is all "what" and the place is left to the node position.
- ACK and CLR need an alert code, never guessed: letters then a number, read
  the way people type it ("a7", "A 7", "#A7", "A-07" are all A7).
- OFF and END take nothing after them (except "duty", "shift" or "now"), so
  that a chat line like "off to the shop" does not end a shift; "ON my way"
  and "ON it" are taken for what they are, answers to an alert, not a shift.
- HELP always leads with SOS: someone typing "help" may be in trouble.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass, replace
from enum import StrEnum

from server.i18n import N_
from server.i18n import gettext as _

# The patrol log keeps places up to 120 characters and the note of a radio
# command is kept to what one packet could carry.
MAX_NOTE = 200
MAX_PLACE = 120
MAX_COUNT = 99
# Beyond this much text nothing is a command; looking further only costs time.
_MAX_SCAN = 4000


class Verb(StrEnum):
    """What a message asks the hub to do; the value is how the pocket card spells it."""

    SOS = "SOS"
    ON = "ON"
    OFF = "OFF"
    CHECK_IN = "CI"
    INCIDENT = "INC"
    ARREST = "ARREST"
    ACK = "ACK"
    CLEAR = "CLR"
    STATUS = "STATUS"
    HELP = "HELP"
    PAY = "PAY"
    GOT = "GOT"
    TAKE = "TAKE"
    DONE = "DONE"
    SAFE = "SAFE"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class Command:
    """One steward message, read: the verb and the fields that verb uses (the rest stay empty)."""

    verb: Verb
    area: str = ""
    note: str = ""
    what: str = ""
    where: str = ""
    count: int | None = None
    code: str = ""
    # HELP <command>: which command to explain.
    topic: Verb | None = None
    # The command word as typed, when a slip was forgiven ("STAUTS").
    corrected_from: str = ""
    # For UNKNOWN: why, short enough to send back in one packet.
    reason: str = ""
    # For UNKNOWN: the command the sender most likely meant, if any.
    suggestion: Verb | None = None

    @property
    def is_known(self) -> bool:
        """Whether the message was a command the hub can act on."""
        return self.verb is not Verb.UNKNOWN


# The command words stay English in every language (the hub reads only them); the words in brackets
# and the meanings are marked for the catalogs and translated where they are shown (`usage`, `meaning`).
POCKET_CARD: list[tuple[str, str]] = [
    (N_("SOS [where]"), N_("I need help now: alerts everyone on shift")),
    (N_("ON [area]"), N_("start my shift")),
    ("OFF", N_("end my shift")),
    (N_("CI [note]"), N_("check in (also OK, CHECKIN)")),
    (N_("INC what, where"), N_("log an incident")),
    (N_("ARREST where [n] [note]"), N_("arrest witnessed, n people: opens a case")),
    ("ACK A7", N_("I am responding to alert A7")),
    ("CLR A7", N_("alert A7 is resolved")),
    ("STATUS", N_("who is on shift, open alerts")),
    (N_("HELP [command]"), N_("the commands, or how to use one")),
    (N_("PAY kitchen 3 [memo]"), N_("offer 3 credits; the receiver confirms")),
    ("GOT P12", N_("confirm transfer P12 offered to me")),
    ("TAKE T4", N_("I take task T4")),
    (N_("DONE T4 [result]"), N_("task T4 is done: what was done, in a line")),
    (N_("SAFE [area]"), N_("the nearest ally open now, a shelter first")),
]
_USAGE = {Verb(syntax.split()[0]): syntax for syntax, _meaning in POCKET_CARD}
_MEANING = {Verb(syntax.split()[0]): meaning for syntax, meaning in POCKET_CARD}

_HELP = N_(
    "Danger? Send SOS [where]. "
    "SAFE: shelter. "
    "ON [area] / OFF: shift. "
    "CI [note]: check in. "
    "INC what, where. "
    "ARREST where [n] [note]. "
    "ACK A7: responding. "
    "CLR A7: resolved. "
    "STATUS. HELP ARREST: details"
)

_SPELLINGS: dict[str, Verb] = {
    "SOS": Verb.SOS,
    "ON": Verb.ON,
    "START": Verb.ON,
    "OFF": Verb.OFF,
    "END": Verb.OFF,
    "CI": Verb.CHECK_IN,
    "OK": Verb.CHECK_IN,
    "CHECKIN": Verb.CHECK_IN,
    "INC": Verb.INCIDENT,
    "INCIDENT": Verb.INCIDENT,
    "ARREST": Verb.ARREST,
    "ACK": Verb.ACK,
    "CLR": Verb.CLEAR,
    "CLEAR": Verb.CLEAR,
    "STATUS": Verb.STATUS,
    "STAT": Verb.STATUS,
    "HELP": Verb.HELP,
    "PAY": Verb.PAY,
    "GOT": Verb.GOT,
    "TAKE": Verb.TAKE,
    "DONE": Verb.DONE,
    "SAFE": Verb.SAFE,
}
# The only words whose slips are forgiven: long enough that a slip cannot
# land on another command, and harmless if misread. Not START (one letter
# from STAT), not CLEAR (standing responders down is not harmless).
_FORGIVING = ("CHECKIN", "INCIDENT", "STATUS", "HELP")
_SOS_WORDS = {"MAYDAY", "EMERGENCY", "HELPME", "DANGER", "911", "112", "999", "000"}
_OFF_WORDS = {"", "DUTY", "SHIFT", "NOW"}
# "ON my way" and "ON it" answer an alert; they do not start a shift.
_ON_CHAT = re.compile(r"(MY WAY|THE WAY|IT|ROUTE)\b", re.IGNORECASE)

_WORD = re.compile(r"[A-Za-z0-9]+")
_CHECK_IN = re.compile(r"[\s_-]*IN(?![A-Za-z0-9])", re.IGNORECASE)
_AFTER_VERB = " .!?:;,-=~*>"
_QUOTES = "\"'`\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u00ab\u00bb"
_BEFORE_VERB = string.punctuation.replace("?", "")  # a leading "?" is HELP
_CODE = re.compile(r"#?\s*([A-Za-z]{1,2})\s*[-#]?\s*([0-9]{1,6})(?![A-Za-z0-9])")
# A count may be followed by a space or punctuation ("3," "2!"), never by more of a word.
_COUNT_ENDS = ",.;:!?"
_COUNT = re.compile(r"([0-9]{1,2})(?![^\s,.;:!?])[\s,.;:!?]*")


def parse_command(text: str | bytes) -> Command:
    """Read one text message from a steward's radio; never raises, whatever arrives."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return _unknown(_("Not a text message."))
    cleaned = _clean(text[:_MAX_SCAN])
    if not cleaned:
        return _unknown(_("Empty message. Send HELP for the commands."))
    # "/sos", "!ci", "'OK'": punctuation around the command word is habit, not meaning.
    if cleaned[0] in _QUOTES:
        cleaned = cleaned.strip(_QUOTES + " ")
    cleaned = cleaned.lstrip(_BEFORE_VERB).lstrip()
    if not cleaned:
        return _unknown(_("Not a command. Send HELP for the commands."))
    if cleaned.startswith("?"):
        return Command(Verb.HELP)
    if cleaned.startswith("\U0001f198"):  # 🆘
        return _did_you_mean(Verb.SOS)
    match = _WORD.match(cleaned)
    if not match:
        return _not_a_command(cleaned)
    typed = match.group().upper()
    rest = cleaned[match.end():]
    if typed == "CHECK" and (joined := _CHECK_IN.match(rest)):
        typed, rest = "CHECKIN", rest[joined.end():]
    rest = rest.lstrip(_AFTER_VERB)

    verb = _SPELLINGS.get(typed)
    corrected_from = ""
    if verb is None:
        if _looks_like_sos(typed):
            return _did_you_mean(Verb.SOS)
        if _looks_like_arrest(typed):
            return _did_you_mean(Verb.ARREST)
        verb = _forgive(typed)
        if verb is None:
            return _not_a_command(cleaned)
        corrected_from = typed
    command = _READERS[verb](rest)
    if corrected_from and command.is_known:
        command = replace(command, corrected_from=corrected_from)
    return command


def help_text(topic: Verb | None = None) -> str:
    """The answer to HELP: every command in one packet, or how to use one of them."""
    if topic is None or topic not in _USAGE:
        return _(_HELP)
    return _("%(usage)s: %(meaning)s", usage=usage(topic), meaning=meaning(topic))


def usage(verb: Verb) -> str:
    """How to type ``verb``, its bracketed words in the language being spoken ("SOS [dónde]")."""
    return _(_USAGE[verb])


def meaning(verb: Verb) -> str:
    """What ``verb`` does, in the language being spoken."""
    return _(_MEANING[verb])


def canned_messages() -> list[str]:
    """Presets for a handheld's canned-message list (joined with "|", at most 200 characters).

    Only commands that need nothing typed. SOS is kept away from CI, the
    preset picked most often, so that a thumb wheel turned one notch too far
    does not raise the alarm.
    """
    return ["CI", "ON", "OFF", "STATUS", "SOS", "ARREST", "HELP"]


def normalize_alert_code(raw: str) -> str:
    """The canonical form of an alert code as typed ("a 07" -> "A7"), or "" when it is none."""
    match = _CODE.fullmatch(_clean(raw).strip())
    return _code_from(match) if match else ""


def _code_from(match: re.Match[str]) -> str:
    letters, digits = match.group(1).upper(), str(int(match.group(2)))
    return f"{letters}{digits}" if len(digits) <= 4 else ""


def _clean(text: str) -> str:
    """Control characters out (the bell among them), compatibility forms folded, white space collapsed."""
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Cs", "Co"):
            kept.append(" " if ch.isspace() else "")
        else:
            kept.append(ch)
    # NFKC reads full-width "ＳＯＳ" and mathematical letters as plain ones.
    folded = unicodedata.normalize("NFKC", "".join(kept))
    return " ".join(folded.split())


def _unknown(reason: str, suggestion: Verb | None = None) -> Command:
    return Command(Verb.UNKNOWN, reason=reason, suggestion=suggestion)


def _not_a_command(cleaned: str) -> Command:
    # "need help SOS", "at the park 🆘": not a command, but someone may be in
    # trouble, so the answer says how to raise the alarm.
    words = {word.upper() for word in _WORD.findall(cleaned)}
    if "\U0001f198" in cleaned or words & ({"SOS"} | _SOS_WORDS):
        return _did_you_mean(Verb.SOS)
    return _unknown(_("Not a command. Send HELP for the commands."))


def _did_you_mean(verb: Verb) -> Command:
    if verb is Verb.SOS:
        return _unknown(_("Did you mean SOS? Send SOS [where] to alert everyone on shift."), Verb.SOS)
    return _unknown(_("Did you mean %(verb)s? Send %(usage)s.", verb=verb.value, usage=usage(verb)), verb)


def _needs_what_happened(verb: Verb) -> Command:
    return _unknown(_("%(verb)s needs what happened: %(usage)s.", verb=verb.value, usage=usage(verb)), verb)


def _needs_code(verb: Verb) -> Command:
    return _unknown(_("%(verb)s needs the alert code: %(usage)s.", verb=verb.value, usage=usage(verb)), verb)


# Whole sentences per field, so a language can say "too long" its own way round.
_TOO_LONG = {
    "area": N_("%(verb)s area too long: at most %(limit)d characters."),
    "note": N_("%(verb)s note too long: at most %(limit)d characters."),
    "text": N_("%(verb)s text too long: at most %(limit)d characters."),
    "place": N_("%(verb)s place too long: at most %(limit)d characters."),
}


def _too_long(verb: Verb, field: str, limit: int) -> Command:
    return _unknown(_(_TOO_LONG[field], verb=verb.value, limit=limit), verb)


def _looks_like_sos(word: str) -> bool:
    return (
        word in _SOS_WORDS
        or word.startswith("SOS")
        or _distance(word, "SOS") <= 1
        or (len(word) <= 9 and "S" in word and set(word) <= {"S", "O", "0"})
    )


def _looks_like_arrest(word: str) -> bool:
    return word.startswith("ARRES") or _distance(word, "ARREST") <= 2


def _forgive(word: str) -> Verb | None:
    """The one harmless command ``word`` is a slip of, or None when none (or more than one) is near."""
    if len(word) < 3:
        return None
    near = [
        spelling for spelling in _FORGIVING if _distance(word, spelling) <= (1 if len(spelling) <= 6 else 2)
    ]
    verbs = {_SPELLINGS[spelling] for spelling in near}
    return verbs.pop() if len(verbs) == 1 else None


def _distance(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap two neighbours) between two short words."""
    if abs(len(a) - len(b)) > 2:
        return 3  # further than any rule here looks
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def _clip(value: str, limit: int) -> str:
    """For alarms: cut an over-long field rather than refuse the alarm."""
    return value[:limit].rstrip()


def _tidy(value: str) -> str:
    return value.strip(" ,;:")


def _read_sos(rest: str) -> Command:
    return Command(Verb.SOS, where=_clip(_tidy(rest), MAX_PLACE))


def _read_on(rest: str) -> Command:
    area = _tidy(rest)
    if _ON_CHAT.match(area):
        return _unknown(_("To answer an alert send ACK A7; to start a shift send ON [area]."), Verb.ACK)
    if len(area) > MAX_PLACE:
        return _too_long(Verb.ON, "area", MAX_PLACE)
    return Command(Verb.ON, area=area)


def _read_off(rest: str) -> Command:
    if _tidy(rest).upper() not in _OFF_WORDS:
        return _unknown(_("To end your shift send OFF on its own."), Verb.OFF)
    return Command(Verb.OFF)


def _read_check_in(rest: str) -> Command:
    note = _tidy(rest)
    if len(note) > MAX_NOTE:
        return _too_long(Verb.CHECK_IN, "note", MAX_NOTE)
    return Command(Verb.CHECK_IN, note=note)


def _read_incident(rest: str) -> Command:
    what, *place = re.split(r"[,@]", rest, maxsplit=1)
    what, where = _tidy(what), _tidy(place[0] if place else "")
    if not what:
        return _needs_what_happened(Verb.INCIDENT)
    if len(what) > MAX_NOTE:
        return _too_long(Verb.INCIDENT, "text", MAX_NOTE)
    if len(where) > MAX_PLACE:
        return _too_long(Verb.INCIDENT, "place", MAX_PLACE)
    return Command(Verb.INCIDENT, what=what, where=where)


def _read_arrest(rest: str) -> Command:
    rest = _tidy(rest)
    where, count, note = rest, None, ""
    before, comma, after = rest.partition(",")
    words = rest.split(" ")
    if comma and (match := _COUNT.match(after.lstrip())) and _is_count(match.group(1)):
        # "Bus stop 12, 2": the comma ended a place that ends in a number.
        where, count, note = before, int(match.group(1)), after.lstrip()[match.end():]
    elif len(words) == 1 and _is_count(words[0]):
        where, count = "", int(words[0])
    else:
        for i in range(1, len(words)):
            if _is_count(number := words[i].rstrip(_COUNT_ENDS)):
                where, count, note = " ".join(words[:i]), int(number), " ".join(words[i + 1:])
                break
        else:
            if comma:  # "Market, riot van": no count, the comma ends the place
                where, note = before, after
    return Command(Verb.ARREST, where=_clip(_tidy(where), MAX_PLACE), count=count, note=_clip(_tidy(note), MAX_NOTE))


def _is_count(word: str) -> bool:
    return word.isascii() and word.isdigit() and len(word) <= 2 and 1 <= int(word) <= MAX_COUNT


def _read_alert_reply(verb: Verb, rest: str) -> Command:
    match = _CODE.match(rest)
    code = _code_from(match) if match else ""
    if not code:
        return _needs_code(verb)
    note = _tidy(rest[match.end():].lstrip(_AFTER_VERB))  # type: ignore[union-attr]
    if len(note) > MAX_NOTE:
        return _too_long(verb, "note", MAX_NOTE)
    return Command(verb, code=code, note=note)


def _read_status(rest: str) -> Command:
    return Command(Verb.STATUS)


def _read_help(rest: str) -> Command:
    word = _WORD.match(rest)
    topic = _SPELLINGS.get(word.group().upper()) if word else None
    return Command(Verb.HELP, topic=topic)


def _read_safe(rest: str) -> Command:
    # An area the hub does not know is no refusal: the answer is then the nearest of all.
    return Command(Verb.SAFE, area=_clip(_tidy(rest), MAX_PLACE))


def _read_task(verb: Verb, rest: str) -> Command:
    """TAKE T4 / DONE T4 [result]: a task code ("t4", "T 4", "#T4"; a bare "4" is T4), never another kind's."""
    match = _CODE.match(rest) or _TASK_NUMBER.match(rest)
    code = _code_from(match) if match and match.re is _CODE else (f"T{int(match.group(1))}" if match else "")
    if not code.startswith("T"):
        return _unknown(_("%(verb)s needs the task code: %(usage)s.", verb=verb.value, usage=usage(verb)), verb)
    note = _tidy(rest[match.end():].lstrip(_AFTER_VERB))  # type: ignore[union-attr]
    if verb is Verb.TAKE and note:
        note = ""  # "TAKE T4 on my way": the words say nothing the hub keeps
    if len(note) > MAX_RESULT:
        return _too_long(verb, "text", MAX_RESULT)
    return Command(verb, code=code, note=note)


_TASK_NUMBER = re.compile(r"#?\s*([0-9]{1,4})(?![A-Za-z0-9])")
# A task's result is one line, as the task map keeps it (server/domain/tasks.py MAX_RESULT).
MAX_RESULT = 160


def _read_pay(rest: str) -> Command:
    """PAY <whom> <amount> [memo]: whom comes first (a crew's name may have spaces), the first number is the amount."""
    words = _tidy(rest).split()
    for i in range(1, len(words)):
        number = words[i].rstrip(_COUNT_ENDS)
        if number.isascii() and number.isdigit() and len(number) <= 4:
            memo = _tidy(" ".join(words[i + 1:]))
            if len(memo) > MAX_NOTE:
                return _too_long(Verb.PAY, "note", MAX_NOTE)
            return Command(Verb.PAY, what=" ".join(words[:i]), count=int(number), note=memo)
    return _unknown(_("PAY needs whom and how much: %(usage)s.", usage=usage(Verb.PAY)), Verb.PAY)


def _read_got(rest: str) -> Command:
    """GOT P12: a transfer's code, never an alert's or a task's."""
    match = _CODE.match(rest)
    code = _code_from(match) if match else ""
    if not code.startswith("P"):
        return _unknown(_("GOT needs the transfer's code: GOT P12."), Verb.GOT)
    return Command(Verb.GOT, code=code)


_READERS = {
    Verb.SOS: _read_sos,
    Verb.ON: _read_on,
    Verb.OFF: _read_off,
    Verb.CHECK_IN: _read_check_in,
    Verb.INCIDENT: _read_incident,
    Verb.ARREST: _read_arrest,
    Verb.ACK: lambda rest: _read_alert_reply(Verb.ACK, rest),
    Verb.CLEAR: lambda rest: _read_alert_reply(Verb.CLEAR, rest),
    Verb.STATUS: _read_status,
    Verb.HELP: _read_help,
    Verb.PAY: _read_pay,
    Verb.GOT: _read_got,
    Verb.SAFE: _read_safe,
    Verb.TAKE: lambda rest: _read_task(Verb.TAKE, rest),
    Verb.DONE: lambda rest: _read_task(Verb.DONE, rest),
}
