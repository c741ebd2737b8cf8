"""Test helpers: requests signed like Twilio's, and a caller who follows the line's TwiML.

TwiML is read with the local phone's own reader (ivr/phone/twiml.py), so a document these callers
accept is one the phone, and Twilio, would run.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator

from ivr.phone import parse_document, spoken_text

AUTH_TOKEN = "test-auth-token"
PUBLIC_BASE_URL = "https://line.example.org"
CALLER = "+15551230001"
#: A caller the outbound-text policy lets the line text (CALLER's 555-123x exchange is no valid US number,
#: by the phonenumbers library; 555-0100 to 555-0199 are valid numbers set aside for fiction).
TEXTABLE_CALLER = "+12025550123"
LINE_NUMBER = "+15559870000"


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """The X-Twilio-Signature Twilio would send for a POST of `params` to `url`."""
    return RequestValidator(token).compute_signature(url, params)


def twilio_post(client: FlaskClient, path: str, params: dict[str, str], token: str = AUTH_TOKEN) -> Any:
    """POST `params` to `path` as Twilio would, with a valid signature for the public URL."""
    signature = sign(PUBLIC_BASE_URL + path, params, token)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def parse_twiml(body: bytes | str) -> ET.Element:
    """Parse a TwiML document, checking it is one (TwimlError, with Twilio's error code, when it is not)."""
    return parse_document(body)


def spoken(root: ET.Element) -> list[str]:
    """Every sentence a <Say> in the document speaks, in order."""
    return [spoken_text(say) for say in root.iter("Say")]


@dataclass
class Call:
    """One phone call to the line, driven like Twilio drives it: follow each action URL."""

    client: FlaskClient
    call_sid: str = "CA00000000000000000000000000000001"
    caller: str = CALLER
    last: ET.Element | None = None
    heard: list[str] = field(default_factory=list)

    def form(self, **extra: str) -> dict[str, str]:
        base = {
            "CallSid": self.call_sid,
            "AccountSid": "AC00000000000000000000000000000000",
            "From": self.caller,
            "To": LINE_NUMBER,
            "CallStatus": "in-progress",
            "Direction": "inbound",
        }
        base.update(extra)
        return base

    def post(self, path: str, **extra: str) -> ET.Element:
        response = twilio_post(self.client, path, self.form(**extra))
        assert response.status_code == 200, response.data
        assert response.mimetype == "text/xml"
        self.last = parse_twiml(response.data)
        self.heard = spoken(self.last)
        return self.last

    def client_post(self, path: str, **extra: str) -> ET.Element:
        """A signed request on another leg of the call (e.g. staff's whisper), leaving the caller's state alone."""
        response = twilio_post(self.client, path, self.form(**extra))
        assert response.status_code == 200, response.data
        return parse_twiml(response.data)

    def start(self, path: str = "/voice") -> list[str]:
        self.post(path)
        return self.heard

    def action(self) -> str:
        """Where Twilio goes next: the Gather/Dial/Record action of the last document."""
        assert self.last is not None
        for tag in ("Gather", "Dial", "Record"):
            node = self.last.find(tag)
            if node is not None:
                return node.attrib["action"]
        redirect = self.last.find("Redirect")
        assert redirect is not None, "no action to follow: the call ended"
        return redirect.text or ""

    def press(self, digits: str) -> list[str]:
        self.post(self.action(), Digits=digits)
        return self.heard

    def say(self, speech: str) -> list[str]:
        self.post(self.action(), SpeechResult=speech, Confidence="0.9")
        return self.heard

    def silence(self) -> list[str]:
        self.post(self.action())
        return self.heard

    def ended(self) -> bool:
        return self.last is not None and self.last.find("Hangup") is not None

    def text(self) -> str:
        return " ".join(self.heard)


def messages(body: bytes | str) -> list[str]:
    """The texts a messaging TwiML document sends, checking it holds nothing but <Message>s."""
    root = parse_twiml(body)
    assert all(child.tag == "Message" for child in root), [child.tag for child in root]
    return ["".join(child.itertext()) for child in root]


@dataclass
class Phone:
    """A mobile phone texting the line, as Twilio delivers each text: a signed POST to /sms."""

    client: FlaskClient
    number: str = CALLER
    line: str = LINE_NUMBER
    sent: int = 0
    last_sid: str = ""

    def form(self, body: str, sid: str) -> dict[str, str]:
        return {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": "AC00000000000000000000000000000000",
            "From": self.number,
            "To": self.line,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
        }

    def text(self, body: str, sid: str | None = None) -> list[str]:
        """Send `body` (as a new message, or again as `sid` like a Twilio retry); the texts the line answers."""
        if sid is None:
            self.sent += 1
            sid = f"SM{self.number[-6:]}{self.sent:026d}"
        self.last_sid = sid
        response = twilio_post(self.client, "/sms", self.form(body, sid))
        assert response.status_code == 200, response.data
        assert response.mimetype == "text/xml"
        return messages(response.data)
