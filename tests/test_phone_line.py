"""The line, called end to end through the local phone, against real `python -m ivr` processes.

Every path runs twice: in local mode (LOCAL_MODE=1, loopback only) and in signed mode (TWILIO_AUTH_TOKEN
set in the server and the phone, so every request carries an X-Twilio-Signature the server checks).
Signed servers differ in one more way: the "open" one sits behind a pretend proxy with an https
PUBLIC_BASE_URL, the "closed" one has a plain-http loopback one; the phone signs it, as Twilio does.
What the line should say is read from prompts/, so the tests follow edits to the wording.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ivr.content import Language
from ivr.phone import (
    CallResult,
    HttpTransport,
    PhoneSetup,
    ScriptedCaller,
    Signer,
    parse_actions,
    place_call,
)
from ivr.storage import Storage, staff_acceptances
from tests.conftest import loaded_content
from tests.helpers.servers import LineServer, local_line, run_phone

pytestmark = pytest.mark.slow

TOKEN = "phone-test-token"
PROXY_BASE_URL = "https://careline.example.org"
LOOPBACK_BASE_URL = "http://127.0.0.1:8080"  # plain http: allowed for an address on this machine only
STAFF_NUMBER = "+15555550123"
ALWAYS = "Mon-Sun 00:00-24:00"

EN: Language = loaded_content().language("en")


def say(prompt: str, **values: str) -> str:
    return EN.say(prompt, **values)


def section(section_id: str, part: int = 0) -> str:
    return " ".join(EN.sections[section_id].voice[part].split())


class Lines:
    """Servers started on first use and shared by the module's tests; all stopped at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.servers: dict[tuple[str, str], LineServer] = {}

    def get(self, mode: str, hours: str) -> LineServer:
        key = (mode, hours)
        if key not in self.servers:
            settings = {"STAFF_NUMBERS": STAFF_NUMBER, "STAFF_HOURS": ALWAYS if hours == "open" else "closed"}
            if mode == "signed":
                settings["TWILIO_AUTH_TOKEN"] = TOKEN
                settings["PUBLIC_BASE_URL"] = PROXY_BASE_URL if hours == "open" else LOOPBACK_BASE_URL
            self.servers[key] = local_line(self.folder / f"{mode}-{hours}", settings)
        return self.servers[key]

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lines]:
    started = Lines(tmp_path_factory.mktemp("lines"))
    yield started
    started.stop()


def signer_for(server: LineServer) -> Signer:
    token = server.environ.get("TWILIO_AUTH_TOKEN", "")
    return Signer(token, server.environ.get("PUBLIC_BASE_URL", ""))


def call(server: LineServer, keys: str, caller_number: str = "+12025550100") -> CallResult:
    """Call `server` with a scripted phone; the call must have run without any error."""
    setup = PhoneSetup(HttpTransport(server.url), signer_for(server), caller_number=caller_number)
    result = place_call(setup, ScriptedCaller(parse_actions(keys)))
    assert result.ok, result.transcript.text() + "\n--- server log ---\n" + server.log()
    assert not result.warnings, result.warnings
    return result


def storage(server: LineServer) -> Storage:
    return Storage(server.environ["DATABASE_URL"], server.environ["SECRET_KEY"])


MODES = pytest.mark.parametrize("mode", ["local", "signed"])


@MODES
def test_greeting_section_by_key_repeat_and_main_menu(lines: Lines, mode: str) -> None:
    result = call(lines.get(mode, "open"), "5 * * #")
    greeting, hospice, choices, repeated, menu = result.turns()
    assert greeting[0] == say("greeting")
    assert say("menu_option", title="hospice and end-of-life care", key="5") in greeting
    assert hospice[0] == section("hospice")
    assert say("section_more", title="hospice and end-of-life care") in hospice
    # The first hearing also carries the one-time notice that the line remembers choices.
    assert say("memory_notice") in hospice
    # * after a part: every choice there, without the part; * again: the part and its short list of choices.
    assert section("hospice") not in choices and say("section_again") in choices and say("section_main") in choices
    assert repeated == [line for line in hospice if line != say("memory_notice")]
    assert menu[0] == say("menu_person")
    assert result.ended == "script-ended"


@MODES
def test_section_by_speech_then_a_wrong_key(lines: Lines, mode: str) -> None:
    result = call(lines.get(mode, "open"), 'say "living will" 7')
    _, directives, wrong_key = result.turns()
    assert directives[0] == section("directives")
    assert wrong_key[0] == say("invalid_key")
    assert say("section_choices") in wrong_key, "after a wrong key the caller hears the section's choices again"


@MODES
def test_silence_three_times_ends_with_a_spoken_goodbye(lines: Lines, mode: str) -> None:
    result = call(lines.get(mode, "closed"), "silence silence silence")
    _, first, second, last = result.turns()
    assert first[0] == say("no_input")
    assert second == [say("no_input_warning")]
    assert last[0] == say("no_input_goodbye")
    assert last[-1] == say("goodbye")
    assert result.ended == "hangup", "the line itself says goodbye and hangs up: never a silent drop"


@MODES
def test_zero_reaches_staff_who_hear_the_whisper_and_accept(lines: Lines, mode: str) -> None:
    server = lines.get(mode, "open")
    result = call(server, "5 0 dial:accept")
    _, _, connecting, back = result.turns()
    assert connecting == [say("staff_connecting")]
    whisper = say("whisper_topic", title="hospice and end-of-life care", language=say("whisper_lang_en"))
    assert result.transcript.said("STAFF HEARS") == [whisper, whisper]
    assert back[0] == say("after_staff_call")
    # The press is kept per staff leg (the Dial action's DialCallSid), so a later try in the call starts afresh.
    with storage(server).engine.connect() as connection:
        legs = connection.execute(sa.select(staff_acceptances.c.call_sid)).scalars().all()
    assert len(legs) == 1 and legs[0] != result.call_sid, "the staff key press reached the line"
    assert storage(server).staff_accepted(legs[0])


@MODES
def test_staff_who_decline_leave_the_caller_a_message_option(lines: Lines, mode: str) -> None:
    server = lines.get(mode, "open")
    result = call(server, "0 dial:decline")
    assert result.turns()[-1][0] == say("staff_unavailable")
    assert say("message_offer") in result.turns()[-1]
    assert not storage(server).staff_accepted(result.call_sid)


@MODES
def test_no_answer_then_a_voice_message_is_kept_with_its_recording(lines: Lines, mode: str) -> None:
    server = lines.get(mode, "open")
    result = call(server, '5 0 dial:no-answer 1 record "This is Ana. Please call me back about hospice." #')
    turns = result.turns()
    assert turns[3][0] == say("staff_unavailable")
    assert turns[4] == [say("record_instructions")]
    assert turns[5][0] == say("record_saved")
    saved = [row for row in storage(server).callback_requests() if row["dedupe_key"] == f"voicemail:{result.call_sid}"]
    assert len(saved) == 1
    assert saved[0]["topic"] == "hospice"
    assert saved[0]["recording_seconds"] >= 1
    assert saved[0]["recording_url"].endswith(saved[0]["recording_sid"])
    # The local phone plays Twilio's transcription too: the message written out, kept sealed.
    assert saved[0]["transcript_state"] == "completed"
    assert "Please call me back" not in saved[0]["transcript"]
    assert storage(server).unseal(saved[0]["transcript"]) == "This is Ana. Please call me back about hospice."


@MODES
def test_hanging_up_after_a_message_still_keeps_it(lines: Lines, mode: str) -> None:
    server = lines.get(mode, "open")
    result = call(server, '0 dial:busy 1 record "Please call me." hangup')
    assert result.ended == "you-hung-up"
    saved = [row for row in storage(server).callback_requests() if row["dedupe_key"] == f"voicemail:{result.call_sid}"]
    assert saved and saved[0]["recording_seconds"] >= 1
    assert storage(server).unseal(saved[0]["transcript"]) == "Please call me."


@MODES
def test_saying_nothing_at_the_beep_is_answered_not_dropped(lines: Lines, mode: str) -> None:
    result = call(lines.get(mode, "open"), "0 dial:failed 1 silence")
    assert result.turns()[-1][0] == say("record_empty")
    assert result.ended == "script-ended"


@MODES
def test_closed_hours_offer_a_message_instead_of_ringing(lines: Lines, mode: str) -> None:
    result = call(lines.get(mode, "closed"), "0 #")
    _, closed, menu = result.turns()
    assert say("emergency_reminder") in closed
    assert closed[-1] == say("message_offer")
    assert not result.transcript.of("staff"), "no staff phone rang"
    assert menu[0] == say("menu_person")


def test_a_phone_with_the_wrong_token_is_refused(lines: Lines) -> None:
    server = lines.get("signed", "open")
    setup = PhoneSetup(HttpTransport(server.url), Signer("not-the-token", PROXY_BASE_URL))
    result = place_call(setup, ScriptedCaller(parse_actions("5")))
    assert result.ended == "error"
    assert any("403" in error for error in result.errors)
    unsigned = place_call(PhoneSetup(HttpTransport(server.url)), ScriptedCaller(parse_actions("5")))
    assert any("403" in error for error in unsigned.errors)


def test_command_line_call_prints_the_transcript(lines: Lines, tmp_path: Path) -> None:
    server = lines.get("signed", "closed")
    script = tmp_path / "call.txt"
    script.write_text("// hospice by speech, then a wrong key\nsay end of life\n7\nhangup\n")
    signed = ("--token", TOKEN, "--public-base-url", LOOPBACK_BASE_URL)
    done = run_phone("call", "--url", server.url, *signed, "--script", str(script))
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'YOU: say "end of life"' in done.stdout
    assert "LINE [en-US]: Sorry, that key is not one of the choices." in done.stdout
    assert "-- call ended: you hung up" in done.stdout


def test_command_line_exits_non_zero_when_refused(lines: Lines) -> None:
    done = run_phone("call", "--url", lines.get("signed", "closed").url, "--keys", "5")
    assert done.returncode == 1
    assert "!! ERROR" in done.stdout and "403" in done.stdout


def test_command_line_in_process_needs_no_server(tmp_path: Path) -> None:
    done = run_phone("call", "--in-process", "--keys", "5 #")
    assert done.returncode == 0, done.stdout + done.stderr
    assert section("hospice")[:60] in " ".join(done.stdout.split())
