"""Every TwiML document the phone line returns follows Twilio's rules and leads only to our routes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask

from ivr import create_app
from tests.conftest import app_config
from tests.helpers.support import Call

GATHER_CHILDREN = {"Say", "Play", "Pause"}
VOICE_VERBS = {"Say", "Play", "Pause", "Gather", "Redirect", "Dial", "Record", "Hangup"}


def check_document(app: Flask, root: ET.Element, caller_facing: bool = True) -> list[str]:
    """Assert the TwiML rules on one document; return every URL it points Twilio to.

    A caller may always speak instead of pressing keys; the staff whisper listens for a key only.
    """
    assert root.tag == "Response"
    urls: list[str] = []
    for verb in root:
        assert verb.tag in VOICE_VERBS, verb.tag
    for gather in root.iter("Gather"):
        assert {child.tag for child in gather} <= GATHER_CHILDREN
        assert int(gather.attrib["timeout"]) >= 6
        assert gather.attrib["finishOnKey"] == ""  # so that # reaches the line as a key
        if caller_facing:
            assert gather.attrib["input"] == "dtmf speech"
            assert gather.attrib["actionOnEmptyResult"] == "true"
            assert gather.attrib.get("hints")
        says = list(gather.iter("Say"))
        assert says, "a Gather always says something"
        urls.append(gather.attrib["action"])
    for say in root.iter("Say"):
        assert say.attrib.get("voice", "").startswith("Polly.") and say.attrib["voice"].endswith("-Neural")
        assert say.attrib.get("language") in {"en-US", "es-US"}
        prosody = say.find("prosody")
        assert prosody is not None and prosody.attrib["rate"].endswith("%")
        assert int(prosody.attrib["rate"].rstrip("%")) < 100, "slightly slower than default"
    for tag in ("Redirect",):
        urls.extend(node.text or "" for node in root.iter(tag))
    for tag in ("Dial", "Record"):
        urls.extend(node.attrib["action"] for node in root.iter(tag))
    urls.extend(node.attrib["recordingStatusCallback"] for node in root.iter("Record"))
    urls.extend(node.attrib["url"] for tag in ("Number", "Sip") for node in root.iter(tag))
    adapter = app.url_map.bind("line.example.org")
    for url in urls:
        parts = urlsplit(url)
        assert not parts.netloc, f"{url} should be relative to the line"
        adapter.match(parts.path, method="POST")  # raises when no route answers it
    return urls


@pytest.mark.parametrize("hours", ["Mon-Sun 00:00-24:00", "closed"])
@pytest.mark.slow
def test_every_document_within_three_steps_follows_the_rules(tmp_path: Path, hours: str) -> None:
    app = create_app(app_config(tmp_path, STAFF_NUMBERS="+15550001111", STAFF_HOURS=hours))
    call = Call(app.test_client())
    start = call.post("/voice")
    queue: deque[tuple[ET.Element, int]] = deque([(start, 0)])
    visited: set[str] = set()
    while queue:
        root, depth = queue.popleft()
        for url in check_document(app, root):
            if url in visited or depth >= 3 or "whisper" in url or "recording-status" in url:
                continue
            visited.add(url)
            if root.find("Dial") is not None:
                moves = [{"DialCallStatus": status} for status in ("busy", "no-answer", "completed")]
            elif root.find("Record") is not None:
                moves = [{"RecordingDuration": "0"}, {"RecordingDuration": "9", "RecordingUrl": "https://x/r"}]
            else:
                moves = [{"Digits": key} for key in "0123456789*#"] + [{}, {"SpeechResult": "hospice"}]
            for move in moves:
                queue.append((call.post(url, **move), depth + 1))
    assert len(visited) > 20


def test_whisper_and_its_answer(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path))
    call = Call(app.test_client())
    whisper = call.post("/voice/whisper?topic=hospice")
    gather = whisper.find("Gather")
    assert gather is not None and gather.attrib["numDigits"] == "1"
    assert "hospice and end-of-life care" in " ".join(call.heard)
    assert whisper.find("Hangup") is not None, "no key: the staff leg hangs up, never a staff voicemail"
    check_document(app, whisper, caller_facing=False)
    # A wrong key hears the whisper once more (t=1); a second wrong key hangs up the staff leg.
    retried = call.post(gather.attrib["action"], Digits="2", ParentCallSid=call.call_sid)
    redirect = retried.find("Redirect")
    assert redirect is not None and "t=1" in (redirect.text or "")
    again = call.post(redirect.text or "")
    declined = call.post(again.find("Gather").attrib["action"], Digits="2", ParentCallSid=call.call_sid)
    assert declined.find("Hangup") is not None
    accepted = call.post("/voice/whisper/answer", Digits="1", ParentCallSid=call.call_sid)
    assert list(accepted) == []
    from ivr.services import Services

    services: Services = app.extensions["careline"]
    assert services.storage.staff_accepted(call.call_sid)
