"""The local phone itself: does it play Twilio's part faithfully?

Small stand-in webhooks answer fixed TwiML and keep every request they get, so each test can check
both what the phone showed and exactly what it sent. The stand-ins check X-Twilio-Signature with the
real RequestValidator whenever the phone signs. The text-message stand-in is served over real HTTP.
"""

from __future__ import annotations

import io
import shutil
import threading
import wave
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.serving import make_server

from ivr import create_app
from ivr.phone import (
    Action,
    AppTransport,
    CallResult,
    HttpTransport,
    PhoneSetup,
    ScriptedCaller,
    ScriptError,
    Signer,
    TerminalCaller,
    espeak_rate,
    espeak_voice,
    main,
    parse_actions,
    parse_script,
    place_call,
    sms_segments,
    text_line,
)
from tests.conftest import app_config
from tests.helpers.servers import run_phone

TOKEN = "stand-in-token"

Page = str | tuple[int, str, str]


def stand_in(pages: dict[str, Page], token: str = "") -> tuple[Flask, list[dict[str, Any]]]:
    """A webhook app answering `pages` by path; it keeps every request, and checks signatures with a token."""
    app = Flask("stand_in")
    seen: list[dict[str, Any]] = []

    @app.route("/<path:path>", methods=["GET", "POST"])
    def page(path: str) -> Response:
        if token:
            params = request.form.to_dict() if request.method == "POST" else {}
            signature = request.headers.get("X-Twilio-Signature", "")
            if not RequestValidator(token).validate(request.url, params, signature):
                abort(403)
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "args": request.args.to_dict(),
                "form": request.form.to_dict(),
                "content_type": request.mimetype,
            }
        )
        answer = pages[request.path]
        if isinstance(answer, tuple):
            status, mimetype, body = answer
            return Response(body, status, mimetype=mimetype)
        return Response(answer, mimetype="text/xml")

    return app, seen


def dial_in(pages: dict[str, Page], keys: str, token: str = "") -> tuple[CallResult, list[dict[str, Any]]]:
    app, seen = stand_in(pages, token)
    setup = PhoneSetup(AppTransport(app), Signer(token))
    return place_call(setup, ScriptedCaller(parse_actions(keys))), seen


def twiml(body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'


HANGUP = twiml("<Hangup/>")


# -- what the phone sends ---------------------------------------------------------------------------


def test_every_request_carries_twilios_call_fields_signed() -> None:
    pages = {"/voice": twiml('<Gather numDigits="4" action="/got"><Say>Your code?</Say></Gather>'), "/got": HANGUP}
    result, seen = dial_in(pages, "12#", token=TOKEN)
    assert result.ok and result.ended == "hangup"
    first, second = seen
    assert first["content_type"] == "application/x-www-form-urlencoded"
    for name in ("CallSid", "AccountSid", "From", "To", "Caller", "Called", "Direction", "ApiVersion"):
        assert first["form"][name] and first["form"][name] == second["form"][name]
    assert first["form"]["CallSid"].startswith("CA") and len(first["form"]["CallSid"]) == 34
    assert (first["form"]["CallStatus"], second["form"]["CallStatus"]) == ("ringing", "in-progress")
    assert first["form"]["Direction"] == "inbound"
    assert second["form"]["Digits"] == "12" and second["form"]["FinishedOnKey"] == "#"


def test_num_digits_ends_the_gather_and_later_keys_are_lost() -> None:
    pages = {"/voice": twiml('<Gather numDigits="2" finishOnKey="" action="/got"/>'), "/got": HANGUP}
    result, seen = dial_in(pages, "#*9")
    assert seen[1]["form"]["Digits"] == "#*"
    assert any("9" in note for note in result.transcript.of("note") if "before these keys" in note)


def test_silence_falls_through_to_the_next_verb_without_action_on_empty_result() -> None:
    pages = {"/voice": twiml('<Gather action="/got"><Say>Press 1.</Say></Gather><Say>Goodbye.</Say><Hangup/>')}
    result, seen = dial_in(pages, "silence")
    assert [r["path"] for r in seen] == ["/voice"]
    assert result.said == ["Press 1.", "Goodbye."]
    assert result.ended == "hangup"


def test_silence_is_reported_with_action_on_empty_result() -> None:
    pages = {"/voice": twiml('<Gather input="dtmf speech" actionOnEmptyResult="true" action="/got"/>'), "/got": HANGUP}
    _, seen = dial_in(pages, "silence")
    assert seen[1]["path"] == "/got"
    assert "Digits" not in seen[1]["form"] and "SpeechResult" not in seen[1]["form"]


def test_speech_is_sent_only_where_the_gather_listens_for_it() -> None:
    pages = {"/voice": twiml('<Gather input="speech" action="/got"/>'), "/got": HANGUP}
    _, seen = dial_in(pages, 'say "living will"')
    assert seen[1]["form"]["SpeechResult"] == "living will"
    assert 0 < float(seen[1]["form"]["Confidence"]) <= 1

    result, seen = dial_in({"/voice": twiml('<Gather action="/got"/><Hangup/>')}, "say hospice")
    assert any("does not listen for speech" in warning for warning in result.warnings)
    assert len(seen) == 1


def test_relative_urls_and_get_redirects_are_followed_like_twilio() -> None:
    pages = {
        "/app/start": twiml('<Redirect method="GET">next?step=2</Redirect>'),
        "/app/next": twiml('<Pause length="2"/><Play>https://example.org/tone.mp3</Play><Hangup/>'),
    }
    app, seen = stand_in(pages, TOKEN)
    result = place_call(PhoneSetup(AppTransport(app), Signer(TOKEN)), ScriptedCaller([]), path="/app/start")
    assert result.ok, result.transcript.text()
    assert seen[1]["method"] == "GET" and seen[1]["path"] == "/app/next"
    assert seen[1]["args"]["step"] == "2" and seen[1]["args"]["CallSid"] == seen[0]["form"]["CallSid"]
    assert "LINE: (pause 2 s)" in result.transcript.text()


def test_signing_for_a_public_base_url_replaces_scheme_and_host() -> None:
    signer = Signer("token", "https://careline.example.org")
    assert signer.url_to_sign("http://127.0.0.1:5000/voice/step?n=main&l=en") == (
        "https://careline.example.org/voice/step?n=main&l=en"
    )
    form = {"CallSid": "CA1", "Digits": "5"}
    signature = signer.headers("POST", "http://127.0.0.1:5000/voice", form)["X-Twilio-Signature"]
    assert RequestValidator("token").validate("https://careline.example.org/voice", form, signature)
    assert "X-Twilio-Signature" not in Signer().headers("POST", "http://127.0.0.1:5000/voice", form)


# -- Dial and Record ----------------------------------------------------------------------------------


def test_dial_fetches_the_whisper_presses_1_and_reports_the_call() -> None:
    pages = {
        "/voice": twiml('<Dial action="/after" timeout="15"><Number url="/whisper">+15555550123</Number></Dial>'),
        "/whisper": twiml('<Gather numDigits="1" action="/whisper/answer"><Say>Press 1.</Say></Gather><Hangup/>'),
        "/whisper/answer": twiml(""),
        "/after": HANGUP,
    }
    result, seen = dial_in(pages, "dial:accept")
    assert result.ok, result.transcript.text()
    parent = seen[0]["form"]["CallSid"]
    whisper, answer, after = seen[1:]
    assert whisper["form"]["ParentCallSid"] == parent and whisper["form"]["Direction"] == "outbound-dial"
    assert whisper["form"]["To"] == "+15555550123"
    assert answer["form"]["Digits"] == "1" and answer["form"]["ParentCallSid"] == parent
    assert after["form"]["DialCallStatus"] == "completed"
    assert after["form"]["DialCallSid"] == whisper["form"]["CallSid"]
    assert int(after["form"]["DialCallDuration"]) > 0
    assert result.transcript.said("STAFF HEARS") == ["Press 1."]


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed"])
def test_dial_reports_unreached_staff(outcome: str) -> None:
    pages = {
        "/voice": twiml('<Dial action="/after"><Number url="/whisper">+15555550123</Number></Dial>'),
        "/after": HANGUP,
    }
    _, seen = dial_in(pages, f"dial:{outcome}")
    assert [r["path"] for r in seen] == ["/voice", "/after"], "no whisper when no one answers"
    assert seen[1]["form"]["DialCallStatus"] == outcome


def test_dial_without_action_goes_on_to_the_next_verb() -> None:
    result, _ = dial_in({"/voice": twiml("<Dial>+15555550123</Dial><Say>Still here.</Say>")}, "dial:busy")
    assert result.said == ["Still here."] and result.ended == "end-of-document"


RECORD = twiml(
    '<Record action="/saved" finishOnKey="#" maxLength="60" recordingStatusCallback="/status" '
    'recordingStatusCallbackEvent="completed absent"/><Say>After the record verb.</Say>'
)


def test_a_recorded_message_is_reported_to_the_action_then_the_status_callback() -> None:
    result, seen = dial_in({"/voice": RECORD, "/saved": HANGUP, "/status": twiml("")}, 'record "Please call me." #')
    assert [r["path"] for r in seen] == ["/voice", "/saved", "/status"]
    saved, status = seen[1]["form"], seen[2]["form"]
    assert saved["RecordingSid"].startswith("RE") and saved["RecordingUrl"].endswith(saved["RecordingSid"])
    assert int(saved["RecordingDuration"]) >= 1 and saved["Digits"] == "#"
    assert status["RecordingStatus"] == "completed" and status["RecordingSid"] == saved["RecordingSid"]
    assert status["CallSid"] == saved["CallSid"]
    assert result.ended == "hangup"


def test_an_empty_recording_skips_the_action_like_twilio() -> None:
    result, seen = dial_in({"/voice": RECORD, "/status": twiml("")}, "silence")
    assert [r["path"] for r in seen] == ["/voice", "/status"]
    assert seen[1]["form"]["RecordingStatus"] == "absent"
    assert result.said == ["After the record verb."]
    assert result.ended == "end-of-document"


def test_hanging_up_after_a_message_still_reports_it() -> None:
    result, seen = dial_in({"/voice": RECORD, "/saved": HANGUP, "/status": twiml("")}, 'record "Hello there." hangup')
    assert seen[1]["form"]["Digits"] == "hangup"
    assert seen[2]["form"]["RecordingStatus"] == "completed"
    assert result.ended == "you-hung-up"


# -- what Twilio would not accept -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (twiml("<Sya>Hello</Sya>"), "12200"),
        (twiml("<Gather><Dial>+15555550123</Dial></Gather>"), "12200"),
        ("<Response><Say>Hello</Response>", "12100"),
        ("<Html/>", "12100"),
        ((500, "text/html", "<h1>Internal Server Error</h1>"), "11200"),
        ((200, "text/html", "<h1>Hello</h1>"), "12300"),
        ((200, "application/json", "{}"), "12300"),
    ],
)
def test_answers_twilio_would_reject_are_errors(answer: Page, code: str) -> None:
    result, _ = dial_in({"/voice": answer}, "5")
    assert result.ended == "error" and not result.ok
    assert any(code in error for error in result.errors), result.errors
    assert "application error" in result.transcript.text()


def test_a_redirect_loop_is_stopped() -> None:
    result, seen = dial_in({"/voice": twiml("<Redirect>/voice</Redirect>")}, "")
    assert result.ended == "error" and "loop" in result.errors[0]
    assert len(seen) < 30


def test_unknown_attributes_are_warned_about() -> None:
    result, _ = dial_in({"/voice": twiml('<Gather numDigit="1"/><Hangup/>')}, "silence")
    assert any("numDigit" in warning for warning in result.warnings)


def test_a_script_that_outlives_the_call_is_not_ok() -> None:
    result, _ = dial_in({"/voice": HANGUP}, "5 #")
    assert result.ended == "hangup" and result.leftover == [Action("keys", "5"), Action("keys", "#")]
    assert not result.ok


def test_a_script_action_that_does_not_fit_the_moment_is_an_error() -> None:
    result, _ = dial_in({"/voice": twiml('<Gather action="/got"/>')}, "dial:accept")
    assert result.ended == "error" and "script" in result.errors[0]


# -- scripts and the terminal -----------------------------------------------------------------------


def test_keys_syntax() -> None:
    assert parse_actions('5 * # 123# say hospice say "living will" silence 0 dial:no-answer hangup') == [
        Action("keys", "5"),
        Action("keys", "*"),
        Action("keys", "#"),
        Action("keys", "123#"),
        Action("speech", "hospice"),
        Action("speech", "living will"),
        Action("silence"),
        Action("keys", "0"),
        Action("dial", "no-answer"),
        Action("hangup"),
    ]
    assert parse_actions('press 5 record "Call me back." record ""') == [
        Action("keys", "5"),
        Action("record", "Call me back."),
        Action("silence"),
    ]
    for bad in ("hello", "say", "dial:maybe", 'say "unclosed'):
        with pytest.raises(ScriptError):
            parse_actions(bad)


def test_script_file_syntax() -> None:
    lines = ["// a comment", "", "5 *", "say living will", "record Hi, it's Ana.", "#", "hangup"]
    assert parse_script(lines) == [
        Action("keys", "5"),
        Action("keys", "*"),
        Action("speech", "living will"),
        Action("record", "Hi, it's Ana."),
        Action("keys", "#"),
        Action("hangup"),
    ]
    with pytest.raises(ScriptError, match="line 2"):
        parse_script(["5", "sing"])


def test_terminal_caller_reads_keys_speech_silence_and_asks_again_after_a_typo() -> None:
    typed = iter(["5", "say hospice", "", "sing", "hangup"])
    out = io.StringIO()
    caller = TerminalCaller(read=lambda prompt: next(typed), out=out)
    assert caller.next("gather", "") == Action("keys", "5")
    assert caller.next("gather", "") == Action("speech", "hospice")
    assert caller.next("gather", "") == Action("silence")
    assert caller.next("gather", "") == Action("hangup")
    assert "not an action" in out.getvalue()
    dial = iter(["4"])
    assert TerminalCaller(read=lambda prompt: next(dial), out=out).next("dial", "") == Action("dial", "busy")


def test_end_of_input_at_the_terminal_hangs_up() -> None:
    def closed(prompt: str) -> str:
        raise EOFError

    caller = TerminalCaller(read=closed, out=io.StringIO())
    result = place_call(PhoneSetup(AppTransport(stand_in({"/voice": twiml("<Gather/>")})[0])), caller)
    assert result.ended == "you-hung-up" and result.ok


def test_piped_script_and_exit_status() -> None:
    out = io.StringIO()
    status = main(["call", "--in-process"], stdin=io.StringIO("// piped in\n5\nhangup\n"), stdout=out)
    assert status == 0, out.getvalue()
    assert "YOU: press 5" in out.getvalue() and "-- call ended: you hung up" in out.getvalue()
    assert main(["call", "--in-process", "--keys", "nonsense"], stdout=io.StringIO()) == 2


# -- the line heard through espeak-ng ----------------------------------------------------------------


def test_espeak_voice_and_rate_follow_the_say() -> None:
    assert espeak_voice("en-US") == "en-us" and espeak_voice("es-US") == "es-419" and espeak_voice("") == "en-us"
    slow = ET.fromstring('<Say language="en-US"><prosody rate="70%">Hello.</prosody></Say>')
    normal = ET.fromstring('<Say language="en-US"><prosody rate="90%">Hello.</prosody></Say>')
    assert espeak_rate(slow) < espeak_rate(normal) < espeak_rate(ET.fromstring("<Say>Hello.</Say>"))


@pytest.mark.slow
def test_speak_to_writes_one_wav_per_turn_and_slow_speech_is_slower(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is needed for this test: apt-get install espeak-ng (.ci/run installs it)")
    app = create_app(app_config(tmp_path, LOCAL_MODE="1", TWILIO_AUTH_TOKEN="", PUBLIC_BASE_URL=""))
    setup = PhoneSetup(AppTransport(app))
    result = place_call(setup, ScriptedCaller(parse_actions("# 8")), speaker_folder=tmp_path / "audio")
    assert result.ok, result.transcript.text()
    assert [path.name for path, _ in result.audio] == ["turn-01.wav", "turn-02.wav", "turn-03.wav"]
    for path, seconds in result.audio:
        with wave.open(str(path)) as audio:
            assert audio.getnframes() / audio.getframerate() == pytest.approx(seconds)
    welcome, menu, slower_menu = (seconds for _, seconds in result.audio)
    assert welcome > menu > 10, "the welcome is the menu plus the greeting"
    assert slower_menu > menu * 1.1, "after 8 the same menu is spoken more slowly"


# -- text messages ----------------------------------------------------------------------------------


def test_segments_gsm7_and_ucs2() -> None:
    assert sms_segments("a" * 160) == sms_segments("a" * 160)
    assert (sms_segments("a" * 160).encoding, sms_segments("a" * 160).count) == ("GSM-7", 1)
    assert sms_segments("a" * 161).count == 2
    assert sms_segments("a" * 306).count == 2 and sms_segments("a" * 307).count == 3
    assert sms_segments("€" * 80).count == 1 and sms_segments("€" * 81).count == 2, "an extension character is 2"
    # 152 + (2) + 152 = 306 septets: a naive count says 2, but the escape pair cannot be split.
    assert sms_segments("a" * 152 + "€" + "a" * 152).count == 3
    assert sms_segments("¿Español? ñ é ü").encoding == "GSM-7"
    spanish = sms_segments("Información")
    assert spanish.encoding == "UCS-2" and spanish.units == 11
    assert sms_segments("á" * 70).count == 1 and sms_segments("á" * 71).count == 2
    assert sms_segments("🙂" * 35).count == 1 and sms_segments("🙂" * 36).count == 2, "an emoji is 2 units"


@pytest.fixture
def sms_stand_in() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A messaging webhook over real HTTP on a free loopback port, checking signatures."""
    app = Flask("sms_stand_in")
    seen: list[dict[str, str]] = []

    @app.post("/sms")
    def sms() -> Response:
        signature = request.headers.get("X-Twilio-Signature", "")
        if not RequestValidator(TOKEN).validate(request.url, request.form.to_dict(), signature):
            abort(403)
        seen.append(request.form.to_dict())
        body = request.form["Body"].strip().upper()
        reply = MessagingResponse()
        if body == "MENU":
            reply.message("CareLine topics: reply HOSPICE or COPING.")
        elif body == "HOSPICE":
            reply.message("Hospice is care for comfort. " * 7)
            reply.message("Reply MORE for more.")
        elif body == "ESPAÑOL":
            reply.message("Información sobre el cuidado de hospicio.")
        elif body in ("STOP", "START"):
            reply.message(f"You sent {body}.")
        elif body == "QUIET":
            return Response("", 204)
        elif body == "BROKEN":
            return Response("<Response><Message>oops</Response>", mimetype="text/xml")
        return Response(str(reply), mimetype="text/xml")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    # Polled often, so that shutdown() returns at once (by default it waits up to 0.5 s).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    thread.join(timeout=10)


def test_texting_shows_each_reply_with_segments_and_encoding(sms_stand_in: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = sms_stand_in
    setup = PhoneSetup(HttpTransport(url), Signer(TOKEN))
    result = text_line(setup, ["MENU", "HOSPICE", "Español", "QUIET"])
    assert result.ok, result.transcript.text()
    menu, hospice, spanish, quiet = result.replies
    assert [(r.segments.count, r.segments.encoding) for r in menu] == [(1, "GSM-7")]
    assert [r.segments.count for r in hospice] == [2, 1]
    assert spanish[0].segments.encoding == "UCS-2"
    assert quiet == []
    shown = result.transcript.text()
    assert "[2 segments, GSM-7; 202 characters]" in shown and "[1 segment, UCS-2;" in shown
    first = seen[0]
    assert first["Body"] == "MENU" and first["NumMedia"] == "0" and first["NumSegments"] == "1"
    assert first["MessageSid"].startswith("SM") and first["MessageSid"] == first["SmsSid"]
    assert first["From"] and first["To"] and first["AccountSid"].startswith("AC")
    assert seen[1]["MessageSid"] != first["MessageSid"]


def test_after_stop_twilio_delivers_nothing_until_start(sms_stand_in: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = sms_stand_in
    result = text_line(PhoneSetup(HttpTransport(url), Signer(TOKEN)), ["STOP", "MENU", "START", "MENU"])
    delivered = [[reply.delivered for reply in replies] for replies in result.replies]
    assert delivered == [[False], [False], [True], [True]]
    assert len(seen) == 4, "the line still hears every message (Twilio forwards STOP and START too)"


@pytest.mark.slow
def test_a_broken_reply_is_an_error_and_the_command_exits_1(sms_stand_in: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = sms_stand_in
    done = run_phone("text", "--url", url, "--token", TOKEN, "--messages", "MENU|BROKEN")
    assert done.returncode == 1
    assert "LINE: CareLine topics: reply HOSPICE or COPING.   [1 segment, GSM-7; 41 characters]" in done.stdout
    assert "!! ERROR: Twilio 12100" in done.stdout


def test_an_unsigned_text_to_a_signed_line_is_refused(sms_stand_in: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = sms_stand_in
    result = text_line(PhoneSetup(HttpTransport(url)), ["MENU"])
    assert any("403" in error for error in result.errors)
