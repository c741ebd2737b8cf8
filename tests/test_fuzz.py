"""Property-based fuzzing (hypothesis) of every Twilio webhook and every URL the line's TwiML leads to.

Whatever arrives (random and hostile Digits, SpeechResult and Body; missing, duplicated and unknown
fields; tampered state in the query string; invalid UTF-8; odd Content-Types, methods, signatures),
every answer is 200 with TwiML that parses and follows Twilio's rules, or 403 / 405 / 413 / 415
as appropriate; and nothing anyone sent is ever echoed into TwiML or into the staff page's HTML.

Example counts come from a hypothesis profile: HYPOTHESIS_PROFILE=ci (the default under CI=true,
what .ci/run uses) runs a few thousand in total, "dev" (the default otherwise) a quarter of that.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from ivr import create_app, safety
from ivr.services import services
from tests.conftest import app_config
from tests.helpers.staff_support import create_staff, sign_in
from tests.helpers.support import AUTH_TOKEN, CALLER, LINE_NUMBER, PUBLIC_BASE_URL, sign

pytestmark = pytest.mark.slow  # thousands of generated examples: tens of seconds

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile("dev", settings.get_profile("ci"), max_examples=25)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
#: Examples per test relative to the ci profile: ci 1, dev 1/4.
SCALE = settings.get_profile(PROFILE).max_examples / 100


def examples(ci_count: int) -> settings:
    """Settings for a test that runs `ci_count` examples under the ci profile (fewer under dev)."""
    return settings(settings.get_profile(PROFILE), max_examples=max(10, int(ci_count * SCALE)))


VOICE_VERBS = {"Say", "Play", "Pause", "Gather", "Redirect", "Dial", "Record", "Hangup"}
#: Every element a voice document may hold anywhere (SSML inside Say; nouns inside Dial).
VOICE_TAGS = VOICE_VERBS | {"Response", "prosody", "say-as", "Number", "Sip"}
GATHER_CHILDREN = {"Say", "Play", "Pause"}
ANSWERS = {200, 403, 405, 413, 415}

# -- hostile input ------------------------------------------------------------------------------------

#: A marker added to every piece of free text sent: it must never come back in an answer.
CANARY = "qzxcanary"
HOSTILE = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202e\u200f\u200b",  # right-to-left override, RTL mark, zero-width space
    "🙂🏥💊",
    "\ufffd",
    "'; DROP TABLE callback_requests; --",
    '" OR 1=1 --',
    "<Response><Hangup/></Response>",
    "</Say><Redirect>https://evil.example/</Redirect><Say>",
    "<script>alert(1)</script>",
    "]]>&amp;&lt;&#0;&#x1F;",
    "{{7*7}}",
    "${7*7}",
    "<%= 7*7 %>",
    "%s%s%s%n",
    "../../etc/passwd",
    "hospice",
    "STOP",
    "START",
    "HELP",
    "call me",
    "MORE",
    "5",
    "#",
    "*",
    "0",
    "x" * 10_000,
    "español ñ ü ¿¡",
]
text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
    st.builds(lambda a, b: f"{{{{{a}*{b}}}}}", st.integers(1009, 9973), st.integers(1009, 9973)),
)
digits = st.one_of(st.text(alphabet="0123456789*#", max_size=4), text)
phone = st.one_of(st.just(CALLER), st.just(""), st.just("+266696687"), st.just("anonymous"), text)
sid = st.one_of(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).map(lambda s: "CA" + s), text)
FIELDS = {
    "CallSid": sid,
    "MessageSid": sid,
    "SmsSid": sid,
    "AccountSid": st.just("AC" + "0" * 32),
    "From": phone,
    "To": st.one_of(st.just(LINE_NUMBER), phone),
    "Digits": digits,
    "SpeechResult": text,
    "Confidence": st.sampled_from(["0.9", "", "NaN", "-1"]),
    "Body": text,
    "CallStatus": st.sampled_from(["in-progress", "ringing", "completed", "", "x"]),
    "Direction": st.sampled_from(["inbound", "outbound-dial", "outbound-api", "", "sideways"]),
    "DialCallStatus": st.sampled_from(["completed", "busy", "no-answer", "failed", "canceled", "", "x"]),
    "DialCallSid": sid,
    "ParentCallSid": sid,
    "RecordingUrl": st.one_of(st.just("https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE1"), text),
    "RecordingSid": sid,
    "RecordingDuration": st.one_of(st.sampled_from(["0", "12", "-3", "99999999999999999999", "1e9"]), text),
    "RecordingStatus": st.sampled_from(["completed", "absent", "failed", ""]),
    "NumMedia": st.sampled_from(["0", "1", "x"]),
}
FREE_TEXT = {"Digits", "SpeechResult", "Body"}


@st.composite
def forms(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Twilio-like form fields: some missing, some twice, some unknown; free text carries the canary."""
    pairs: list[tuple[str, str]] = []
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=10)):
        value = draw(FIELDS[name])
        if name in FREE_TEXT and value and draw(st.booleans()):
            value = f"{value} {CANARY}"
        pairs.append((name, value))
    for _ in range(draw(st.integers(0, 2))):
        pairs.append((draw(st.text(min_size=1, max_size=12)), draw(text)))
    return pairs


# -- the app, its routes, and where its TwiML leads -----------------------------------------------------


def twilio_rules(app: Flask) -> list[Any]:
    """Every route Twilio calls: the views @twilio_only guards."""
    views = app.view_functions
    return [rule for rule in app.url_map.iter_rules() if getattr(views[rule.endpoint], "twilio_signed", False)]


def sample_path(rule: Any) -> str:
    return re.sub(r"<[^>]+>", "hospice", rule.rule)


def crawl(client: FlaskClient, start: Iterable[str], limit: int = 200) -> list[str]:
    """The URLs reachable from `start` by following every action in the answers (keys, speech, silence)."""
    seen: list[str] = []
    queue = deque(start)
    moves = [{"Digits": key} for key in "0123456789*#"] + [{}, {"SpeechResult": "hospice"}, {"DialCallStatus": "busy"}]
    while queue and len(seen) < limit:
        url = queue.popleft()
        if url in seen:
            continue
        seen.append(url)
        for move in moves:
            form = {"CallSid": "CA" + "1" * 32, "From": CALLER, "To": LINE_NUMBER, **move}
            response = signed_post(client, url, list(form.items()))
            if response.status_code == 200 and response.mimetype == "text/xml":
                queue.extend(u for u in urls_in(ET.fromstring(response.data)) if u not in seen)
    return seen


def urls_in(root: ET.Element) -> list[str]:
    urls = [node.attrib["action"] for node in root.iter() if "action" in node.attrib]
    urls += [node.attrib[a] for node in root.iter() for a in ("url", "recordingStatusCallback") if a in node.attrib]
    urls += [node.text or "" for node in root.iter("Redirect")]
    return urls


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    folder = tmp_path_factory.mktemp("fuzz")
    return create_app(app_config(folder, STAFF_NUMBERS="+15550001111", STAFF_HOURS="Mon-Sun 00:00-24:00"))


@pytest.fixture(scope="module")
def closed_line(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    folder = tmp_path_factory.mktemp("fuzz-closed")
    return create_app(app_config(folder, STAFF_HOURS="closed"))


@pytest.fixture(scope="module")
def places(line: Flask, closed_line: Flask) -> list[str]:
    """Every webhook, and every URL the TwiML leads to from the start of a call, open and closed hours."""
    starts = [sample_path(rule) for rule in twilio_rules(line)]
    found = crawl(line.test_client(), starts, limit=150) + crawl(closed_line.test_client(), ["/voice"], limit=60)
    return sorted(set(found))


# -- requests and the checks on every answer ----------------------------------------------------------


def signed_post(
    client: FlaskClient, url: str, pairs: list[tuple[str, str]], headers: dict[str, str] | None = None
) -> Any:
    form = MultiDict(pairs)
    signature = sign(PUBLIC_BASE_URL + url, form)
    return client.post(url, data=form, headers={"X-Twilio-Signature": signature, **(headers or {})})


def check_answer(app: Flask, url: str, response: Any, sent: str = "") -> None:
    """The rules every answer keeps; `sent` is everything the request carried, to look for echoes."""
    assert response.status_code in ANSWERS, (url, response.status_code, response.data[:300])
    body: bytes = response.data
    assert b"<script" not in body.lower()
    if response.status_code != 200:
        return
    assert response.mimetype == "text/xml", (url, response.mimetype)
    root = ET.fromstring(body)  # raises on anything that is not well-formed XML
    assert root.tag == "Response"
    text = " ".join("".join(node.itertext()) for node in root.iter())
    everything = text + " " + " ".join(str(v) for node in root.iter() for v in node.attrib.values())
    assert CANARY not in everything, f"{url} echoed what was sent"
    for product in re.findall(r"\{\{(\d{4})\*(\d{4})\}\}", sent):
        assert str(int(product[0]) * int(product[1])) not in everything, "a template was evaluated"
    if urlsplit(url).path.startswith("/sms"):
        assert all(child.tag == "Message" and len(child) == 0 for child in root), [c.tag for c in root]
        return
    assert {node.tag for node in root.iter()} <= VOICE_TAGS, {node.tag for node in root.iter()}
    assert all(verb.tag in VOICE_VERBS for verb in root)
    for gather in root.iter("Gather"):
        assert {child.tag for child in gather} <= GATHER_CHILDREN
        assert list(gather.iter("Say")), "a Gather always says something"
    adapter = app.url_map.bind("line.example.org")
    for target in urls_in(root):
        parts = urlsplit(target)
        assert not parts.netloc, f"{target} leaves the line"
        adapter.match(parts.path, method="POST")


# -- the properties -----------------------------------------------------------------------------------


def test_the_fuzzed_routes_are_every_twilio_route(line: Flask, places: list[str]) -> None:
    """Every webhook is fuzzed, and the crawl reached well beyond them (the menus, sections, offers)."""
    paths = {urlsplit(place).path for place in places}
    for rule in twilio_rules(line):
        assert sample_path(rule) in paths, rule.rule
        assert rule.methods is not None and rule.methods - {"HEAD", "OPTIONS"} == {"POST"}, rule.rule
    assert {"/voice", "/voice/step", "/voice/fallback", "/sms", "/sms/fallback", "/voice/whisper"} <= paths
    assert len(places) > 40, len(places)


@given(data=st.data())
def test_any_form_on_any_place_gets_valid_twiml(line: Flask, places: list[str], data: st.DataObject) -> None:
    url = data.draw(st.sampled_from(places))
    pairs = data.draw(forms())
    response = signed_post(line.test_client(), url, pairs)
    check_answer(line, url, response, repr(pairs))
    assert response.status_code == 200, (url, pairs, response.data[:300])


test_any_form_on_any_place_gets_valid_twiml = examples(2000)(test_any_form_on_any_place_gets_valid_twiml)

STATE_KEYS = ["n", "l", "s", "p", "m", "q", "r", "sl", "topic", "t"]
state_value = st.one_of(
    st.sampled_from(["main", "section", "staff", "offer", "record", "en", "es", "hospice", "1", "99", "-1", "y", "n"]),
    text,
)


@given(data=st.data())
def test_tampered_state_and_unknown_query_parameters(line: Flask, places: list[str], data: st.DataObject) -> None:
    """A query string signed by Twilio came from our own TwiML; even so, anything in it is answered safely."""
    path = urlsplit(data.draw(st.sampled_from(places))).path
    plain = True
    if path.startswith("/voice/section/"):  # a transfer straight to a section: any name at all
        plain_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC_-.~0123456789", min_size=1)
        name = data.draw(st.one_of(plain_names, text.filter(bool)))
        path = "/voice/section/" + quote(name, safe="")
        # A name that needs %-escapes: Flask sees it decoded, so the signature (over the URL as Twilio sent
        # it) may not match (403), and an escaped "/" matches no route (404). Transfer URLs use plain ids.
        plain = quote(name, safe="") == name and name not in (".", "..")
    keys = st.one_of(st.sampled_from(STATE_KEYS), st.text(min_size=1, max_size=8))
    query = data.draw(st.lists(st.tuples(keys, state_value), max_size=8))
    url = path + ("?" + urlencode(query) if query else "")
    pairs = data.draw(forms())
    response = signed_post(line.test_client(), url, pairs)
    if not plain and response.status_code == 404:
        return
    check_answer(line, url, response, repr(pairs))
    assert response.status_code == 200 or (not plain and response.status_code == 403), (url, response.data[:300])


test_tampered_state_and_unknown_query_parameters = examples(1200)(test_tampered_state_and_unknown_query_parameters)

CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=UTF-8",
    "application/x-www-form-urlencoded; charset=latin-1",
    "application/json",
    "text/plain",
    "multipart/form-data; boundary=xyz",
    "text/xml",
    "",
]
raw_piece = st.one_of(
    st.binary(max_size=40).map(lambda b: "".join(f"%{byte:02X}" for byte in b)),  # any bytes, invalid UTF-8 too
    st.sampled_from(["%FF%FE", "%C3%28", "%ED%A0%80", "%00", "%E2%80%AE", "%F0%9F%99%82", "%", "%G1", "+", "&&", "=="]),
    st.text(alphabet="abcXYZ0123456789 <>&;'\"", max_size=20).map(lambda s: quote(s, safe="")),
)


@given(data=st.data())
def test_raw_bodies_with_invalid_utf8_and_odd_content_types(
    line: Flask, places: list[str], data: st.DataObject
) -> None:
    """The body as bytes: percent-escapes of invalid UTF-8, duplicated and empty fields, odd Content-Types.

    Signed for the fields the line reads from it, so the request gets past the signature: a form is
    answered (200), anything that is not a form is refused (415)."""
    url = data.draw(st.sampled_from(places))
    names = st.one_of(st.sampled_from(["Body", "Digits", "SpeechResult", "From", "CallSid", "MessageSid"]), raw_piece)
    pieces = data.draw(st.lists(st.tuples(names, raw_piece), max_size=8))
    raw = "&".join(f"{name}={value}" for name, value in pieces).encode()
    content_type = data.draw(st.sampled_from(CONTENT_TYPES))
    client = line.test_client()
    with line.test_request_context(url, method="POST", data=raw, content_type=content_type):
        parsed = request.form.copy()  # the fields exactly as the line will read them
    headers = {"X-Twilio-Signature": sign(PUBLIC_BASE_URL + url, parsed)}
    response = client.post(url, data=raw, content_type=content_type or None, headers=headers)
    check_answer(line, url, response, raw.decode("latin-1"))
    is_form = content_type.startswith("application/x-www-form-urlencoded") or (not content_type and not raw)
    expected = 200 if is_form else 415
    assert response.status_code == expected, (url, content_type, raw[:80], response.status_code)


test_raw_bodies_with_invalid_utf8_and_odd_content_types = examples(1000)(
    test_raw_bodies_with_invalid_utf8_and_odd_content_types
)


@given(data=st.data())
def test_unsigned_wrongly_signed_or_wrong_method_requests_change_nothing(
    line: Flask, places: list[str], data: st.DataObject
) -> None:
    url = data.draw(st.sampled_from(places))
    pairs = data.draw(forms())
    form = MultiDict(pairs)
    good = sign(PUBLIC_BASE_URL + url, form)
    signature = data.draw(
        st.one_of(
            st.just(""),
            st.text(max_size=40),
            st.just(good[:-2] + ("AA" if not good.endswith("AA") else "BB")),
            st.just(sign(PUBLIC_BASE_URL + url, form, token=AUTH_TOKEN + "x")),
            st.just(sign("http://localhost" + url, form)),
        )
    )
    method = data.draw(st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE", "PATCH"]))
    # HTTP carries ASCII header values on one line: a drawn line break is no signature anyone can send.
    sendable = signature.isascii() and not any(character in signature for character in "\r\n")
    headers = {"X-Twilio-Signature": signature} if sendable else {}
    response = line.test_client().open(url, method=method, data=form, headers=headers)
    check_answer(line, url, response, repr(pairs))
    assert response.status_code == (403 if method == "POST" else 405), (method, response.status_code)


test_unsigned_wrongly_signed_or_wrong_method_requests_change_nothing = examples(600)(
    test_unsigned_wrongly_signed_or_wrong_method_requests_change_nothing
)

# -- conversations: sequences, not single requests -------------------------------------------------------

STOP_WORDS = ["STOP", "stop", "Stop.", "PARAR", "stop texting me", "UNSUBSCRIBE"]
START_WORDS = ["START", "unstop", "YES"]
HELP_WORDS = ["HELP", "AYUDA", "info"]
OTHER_TEXTS = ["hospice", "MORE", "5", "menu", "call me", "I want to die", "español", "", "{{7*7}}", "<b>hi</b>"]


@given(
    texts=st.lists(
        st.tuples(
            st.sampled_from([CALLER, "+15551230002"]),
            st.sampled_from(STOP_WORDS + START_WORDS + HELP_WORDS + OTHER_TEXTS),
        ),
        min_size=1,
        max_size=12,
    ),
    retry=st.booleans(),
)
def test_text_conversations_keep_every_opt_out(line: Flask, texts: list[tuple[str, str]], retry: bool) -> None:
    """Any sequence of texts from two numbers: after STOP, nothing but the answers to STOP, START, HELP and
    urgent words (each number on its own), until START; a retried message gets the very same answer."""
    client = line.test_client()
    # Each example starts both numbers opted in, whatever earlier examples did.
    for number in (CALLER, "+15551230002"):
        signed_post(client, "/sms", [("From", number), ("To", LINE_NUMBER), ("Body", "START"), ("MessageSid", "")])
    opted_out = {CALLER: False, "+15551230002": False}
    for index, (number, body) in enumerate(texts):
        message_sid = f"SM{os.urandom(8).hex()}{index:016d}"
        pairs = [("From", number), ("To", LINE_NUMBER), ("Body", body), ("MessageSid", message_sid)]
        response = signed_post(client, "/sms", pairs)
        check_answer(line, "/sms", response)
        answered = len(ET.fromstring(response.data)) > 0
        # Safety before the opt-out rule (issue 13): urgent words are answered even after STOP.
        urgent = safety.classify(services(line).content, body, "en", typos=True) is not None
        if opted_out[number] and body not in START_WORDS + HELP_WORDS + STOP_WORDS and not urgent:
            assert not answered, (number, body)
        if retry:
            again = signed_post(client, "/sms", pairs)
            assert again.data == response.data
        if body in STOP_WORDS:
            opted_out[number] = True
        elif body in START_WORDS:
            opted_out[number] = False


test_text_conversations_keep_every_opt_out = examples(400)(test_text_conversations_keep_every_opt_out)


@given(
    moves=st.lists(
        st.one_of(digits.map(lambda d: {"Digits": d}), text.map(lambda t: {"SpeechResult": t}), st.just({})),
        max_size=15,
    )
)
def test_random_calls_follow_the_twiml_and_never_dead_end(line: Flask, moves: list[dict[str, str]]) -> None:
    """A call that follows the line's own TwiML with random keys, words and silences: every document keeps
    the rules, and the call only ever ends with a spoken goodbye (never a silent hang-up)."""
    client = line.test_client()
    call_sid = "CA" + os.urandom(16).hex()
    url = "/voice"
    for move in [{}, *moves]:
        form = {"CallSid": call_sid, "From": CALLER, "To": LINE_NUMBER, **move}
        if url.startswith("/voice/step?n=staff"):
            form["DialCallStatus"] = "no-answer"
        response = signed_post(client, url, list(form.items()))
        check_answer(line, url, response, repr(move))
        root = ET.fromstring(response.data)
        if root.find("Hangup") is not None:
            assert list(root.iter("Say")), "a call never ends without a word"
            return
        actions = [node.attrib["action"] for node in root if "action" in node.attrib]
        redirects = [node.text or "" for node in root.iter("Redirect")]
        url = (actions or redirects)[0]


test_random_calls_follow_the_twiml_and_never_dead_end = examples(500)(
    test_random_calls_follow_the_twiml_and_never_dead_end
)


# -- sizes and the staff page ---------------------------------------------------------------------------


def test_a_body_over_64_kib_gets_413(line: Flask) -> None:
    client = line.test_client()
    big = [("Body", "x" * (70 * 1024)), ("From", CALLER)]
    for url in ("/sms", "/voice", "/voice/step?n=main&l=en"):
        assert signed_post(client, url, big).status_code == 413
        assert client.post(url, data=dict(big)).status_code == 413  # unsigned: refused before anything else
    assert signed_post(client, "/sms", [("Body", "x" * (60 * 1024)), ("From", CALLER)]).status_code == 200


@given(caller=text, topic=text)
def test_the_staff_page_escapes_whatever_callers_send(
    staff_line: tuple[Flask, FlaskClient], caller: str, topic: str
) -> None:
    """Call-back requests from hostile numbers (From is whatever the carrier passed on) are shown escaped."""
    app, staff = staff_line
    marker = f"<i>{CANARY}</i>{caller}"
    body = f"call me about {topic}"
    pairs = [("From", marker), ("To", LINE_NUMBER), ("Body", body), ("MessageSid", os.urandom(8).hex())]
    response = signed_post(app.test_client(), "/sms", pairs)
    check_answer(app, "/sms", response, repr(pairs))
    page = staff.get("/staff")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f"<i>{CANARY}" not in html, "a caller's input was rendered as HTML"
    assert "<script>alert" not in html


test_the_staff_page_escapes_whatever_callers_send = examples(200)(test_the_staff_page_escapes_whatever_callers_send)


@pytest.fixture(scope="module")
def staff_line(tmp_path_factory: pytest.TempPathFactory) -> tuple[Flask, FlaskClient]:
    app = create_app(app_config(tmp_path_factory.mktemp("fuzz-staff"), WTF_CSRF_ENABLED=True))
    create_staff(app)
    staff = app.test_client()
    assert sign_in(staff).status_code == 303  # signed in: on to the queue
    return app, staff
